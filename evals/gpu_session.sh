#!/usr/bin/env bash
# One call on a lent GPU machine: the CUDA tests, the CUDA benchmarks, then the not-yet-started
# runs of the reproduction queue on the GPU until the time is up. A session has 15 minutes of
# device time in all (the machine's start included) and 10 minutes a call, so everything is one
# prepared call. Three steps:
#
#   here:    bash evals/gpu_session.sh prepare
#            (copies MNIST into .gpu/mnist and downloads the wheels the device's image lacks into
#            .gpu/whl; .gpu/ is ignored through .git/info/exclude)
#   device:  run(command="bash evals/gpu_session.sh run 4", carry=[".gpu"], timeout_s=580)
#            (4 = minutes of training after the tests and benchmarks; what it writes comes back
#            under files_at: cuda_tests.txt, bench_*_cuda.json, queue.log, runs.tgz)
#   here:    bash evals/gpu_session.sh merge FILES_AT
#            (stop the local queue first: complete GPU runs replace any local copy; the results
#            land in evals/runs/ and evals/results/; then python evals/table1.py and commit)
#
# GPU runs record "device": "cuda" in their config.json; a run is never continued on another
# device (the queue on the GPU starts only runs that have not begun: --skip-partial).
set -u
cmd=${1:-}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

case "$cmd" in
prepare)
    mkdir -p .gpu/whl .gpu/mnist
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    cp "${STFTBLUR_DATA:-../shared/data/mnist}"/*-ubyte* .gpu/mnist/ || exit 1
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/whl kornia==0.9.0 kornia_rs==0.2.0 focal-frequency-loss==0.3.0 || exit 1
    du -sh .gpu
    ;;
run)
    train_minutes=${2:-4}
    out=${OUT:-/tmp/gpu-out}
    mkdir -p "$out"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$root STFTBLUR_DATA=$root/.gpu/mnist PYTHONUNBUFFERED=1
    nvidia-smi -L > "$out/device.txt" 2>&1
    python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" >> "$out/device.txt" 2>&1
    # 1. The CUDA tests (every test with "cuda" in its name; the others ran on CPU in CI).
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests -k cuda > "$out/cuda_tests.txt" 2>&1
    # 2. The benchmarks on the GPU, before any training shares it.
    timeout 120 python3 evals/bench_loss.py --device cuda --out "$out/bench_loss_cuda.json" > "$out/bench.txt" 2>&1
    timeout 90 python3 evals/bench_metrics.py --dtypes float32 --repeats 5 --out "$out/bench_metrics_cuda.json" >> "$out/bench.txt" 2>&1
    timeout 90 python3 evals/bench_train.py --device cuda --losses l2 ours --threads 1 --steps 200 --warmup 20 \
        --out "$out/bench_train_cuda.json" >> "$out/bench.txt" 2>&1
    # 3. Training: runs that have not begun, 8 at a time, until the time is up; only the runs
    #    that complete come back.
    ls -d evals/runs/*/ 2>/dev/null | sort > /tmp/runs_before
    setsid python3 evals/reproduce.py --device cuda --jobs 8 --threads 1 --skip-partial > "$out/queue.log" 2>&1 &
    queue=$!
    sleep $((train_minutes * 60))
    kill -TERM -- -"$queue" 2>/dev/null
    sleep 2
    complete=$(for d in evals/runs/*/; do [ -f "$d/summary.json" ] && ! grep -qx "$d" /tmp/runs_before && echo "${d%/}"; done)
    if [ -n "$complete" ]; then
        tar czf "$out/runs.tgz" $complete $(for d in $complete; do ls "$d.log" 2>/dev/null; done)
    fi
    echo "complete on the GPU: $(echo $complete | wc -w) runs" >> "$out/queue.log"
    ;;
merge)
    src=${2:?usage: gpu_session.sh merge FILES_AT}
    if pgrep -f "evals/reproduce.py" > /dev/null; then
        echo "stop the local queue first (it may be training a run the GPU finished)" >&2
        exit 2
    fi
    if [ -f "$src/runs.tgz" ]; then
        # A complete GPU run replaces whatever the local queue left of it.
        for d in $(tar tzf "$src/runs.tgz" | cut -d/ -f1-3 | grep -v '\.log$' | sort -u); do
            rm -rf "${root:?}/$d" "$root/$d.lock"
        done
        tar xzf "$src/runs.tgz" -C "$root"
        tar tzf "$src/runs.tgz" | cut -d/ -f3 | grep -v '\.log$' | sort -u | sed 's/^/merged /'
    fi
    for f in bench_loss_cuda.json bench_metrics_cuda.json bench_train_cuda.json; do
        [ -f "$src/$f" ] && cp "$src/$f" evals/results/
    done
    cat "$src/device.txt" "$src/cuda_tests.txt" 2>/dev/null | tail -20
    ;;
*)
    echo "usage: bash evals/gpu_session.sh prepare | run [TRAIN_MINUTES] | merge FILES_AT" >&2
    exit 2
    ;;
esac

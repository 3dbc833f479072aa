# Two entry points (see README.md): `make demo` and `make test`.
# Both create or reuse the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
export STFTBLUR_SHARED ?= $(SHARED)
export STFTBLUR_DATA ?= $(SHARED)/data/mnist
# torch 2.14.1 + torchvision 0.29.1 are the releases timm resolves to on these machines.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test bench clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/stftblur demo --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(PY) evals/bench_loss.py

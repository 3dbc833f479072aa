# Two entry points (see README.md): `make demo` and `make test`.
# Both create or reuse the virtual environment in .venv and install what they need:
# the demo the core and the `plot` extra (its figures), the tests the `test` extra (every extra
# the suite exercises: plot, vision, skimage, bench and the frameworks). Each install is redone
# when pyproject.toml or setup.py changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED ?= $(abspath ../shared)
export STFTBLUR_SHARED ?= $(SHARED)
export STFTBLUR_DATA ?= $(SHARED)/data/mnist
# torch 2.14.1 + torchvision 0.29.1 are the releases timm resolves to on these machines; the
# demo's core install needs torch only.
TORCH_PIN ?= torch==2.14.1
TORCHVISION_PIN ?= torchvision==0.29.1

.PHONY: venv demo test bench

$(VENV)/.created:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	touch $@

# The core and the plot extra: what `make demo` runs on.
$(VENV)/.installed-demo: pyproject.toml setup.py $(VENV)/.created
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[plot]'
	touch $@

# The test extra: everything the test suite imports.
$(VENV)/.installed-test: pyproject.toml setup.py $(VENV)/.created
	$(PY) -m pip install -q $(TORCH_PIN) $(TORCHVISION_PIN)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(VENV)/bin/stftblur demo --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) evals/bench_loss.py

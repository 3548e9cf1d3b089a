# fcn: `make demo` and `make test` do all the set-up a fresh Debian 12 machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# the model folders that fcn-netgen writes (each holds a deploy.prototxt)
MODELS := $(sort $(patsubst %/deploy.prototxt,%,$(wildcard */deploy.prototxt)))

.PHONY: help setup setup-system venv caffe wheel wheel-check gpu-bundle gpu-rehearsal test lint demo nets bench clean \
	fresh-check $(MODELS)

help:
	@echo "make demo     the staged FCN-32s -> 16s -> 8s pipeline on a synthetic VOC dataset"
	@echo "make demo GPU=0   the same on GPU 0 (needs a CUDA build: CUDA=1 make caffe)"
	@echo "make test     lint and the test suite (does all set-up first)"
	@echo "make setup    Debian packages, .venv, pycaffe built from source (cached)"
	@echo "make caffe    (re)install pycaffe; CAFFE_SRC=/path/to/caffe, CUDA=1"
	@echo "make wheel    a relocatable pycaffe wheel (manylinux, auditwheel) in dist/, from the cached build; CUDA=1"
	@echo "make wheel-check  install that wheel and train a few steps in a bare Debian 12 root (root; KEEP=1 keeps it)"
	@echo "make gpu-bundle PY_INCLUDE=DIR BOOST_PYTHON_SRC=DIR  gpu-bundle/ for the lent GPU machine (docs/GPU.md)"
	@echo "make gpu-rehearsal BOOST_PYTHON_SRC=DIR  the same with this Python's headers, and the GPU suite in CPU mode"
	@echo "make nets     regenerate every model's prototxts;  make MODEL  one model"
	@echo "make bench    Caffe vs PyTorch CPU speed and memory"
	@echo "make bench GPU=0  Caffe vs PyTorch on GPU 0, beside the paper's K40c times (CUDA builds of both)"
	@echo "make clean    remove .venv and caches in the tree (not the build cache)"
	@echo "make fresh-check  make test and make demo in a bare Debian 12 root from a clean clone (root; KEEP=1 keeps it)"

setup: setup-system venv caffe

setup-system:
	@bash scripts/setup_system.sh

# The venv is rebuilt when the declared dependencies change.
venv: $(VENV)/.installed
$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fcn needs Python >= 3.11, found " + sys.version' 
	@test -x $(PY) || { echo "[setup] creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@$(PIP) install --quiet --upgrade pip setuptools wheel
	@! $(PIP) show --quiet fcn 2>/dev/null || $(PIP) uninstall --quiet -y fcn  # this project's old name
	@echo "[setup] pip install -e . (dependencies from setup.cfg)"
	@$(PIP) install --quiet -e '.[test]' || { echo "error: pip install failed: is PyPI reachable?" >&2; exit 1; }
	@touch $@

# fcn-export's dependencies (torch, onnx, onnxruntime): the tests use them, the demo does not.
$(VENV)/.export: $(VENV)/.installed
	@echo "[setup] pip install -e '.[export]' (torch, onnx, onnxruntime for fcn-export and its tests)"
	@$(PIP) install --quiet -e '.[test,export]' || { echo "error: pip install failed: is PyPI reachable?" >&2; exit 1; }
	@touch $@

caffe: setup-system venv
	@$(PY) scripts/build_caffe.py

# The same build as `make caffe` (the same variables), repaired into dist/; the last line is its path.
wheel: setup-system venv
	@$(PY) scripts/build_caffe.py --wheel dist

wheel-check:
	@bash scripts/wheel_check.sh $(if $(KEEP),--keep)

# The GPU machine's Python 3.12 has no Boost.Python and no network (docs/GPU.md). CI runs neither target.
gpu-bundle: setup-system venv
	@$(PY) scripts/gpu_bundle.py $(if $(PY_INCLUDE),--py-include "$(PY_INCLUDE)") \
		$(if $(BOOST_PYTHON_SRC),--boost-python-src "$(BOOST_PYTHON_SRC)")

gpu-rehearsal: setup-system venv $(VENV)/.export  # the stand-in machine takes PyTorch and onnxruntime at their versions
	@bash scripts/gpu_rehearsal.sh $(if $(BOOST_PYTHON_SRC),--boost-python-src "$(BOOST_PYTHON_SRC)")

test: setup $(VENV)/.export
	$(VENV)/bin/ruff check .
	FCN_STRICT_SKIPS=1 $(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .

demo: setup
	$(PY) -m solvers.demo $(if $(GPU),--gpu $(GPU))

nets: setup
	$(VENV)/bin/fcn-netgen --all

$(MODELS): setup
	$(VENV)/bin/fcn-netgen $@

bench: setup
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m caffe_fcn.bench $(if $(GPU),--gpu $(GPU))

# A new user's machine: a bare Debian 12 root, a clean clone of HEAD, an empty build cache.
fresh-check:
	@bash scripts/fresh_check.sh $(if $(KEEP),--keep)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

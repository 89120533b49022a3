# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv if missing and installs the package (compiling the kernels).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sci_edge_installed
EXTRAS ?= dev,train

.PHONY: all install demo test test-fast bench weights clean distclean

all: install

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py $(wildcard kernels/*.pyx kernels/*.pxd kernels/*.h)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77" wheel "Cython>=3" "numpy>=2"
	$(PY) -m pip install -q --no-build-isolation -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sci-edge demo -o demo_out

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(VENV)/bin/sci-edge bench sim --json

# Reproduce the shipped weights (CPU; see README for the wall times).
weights: $(STAMP)
	$(VENV)/bin/sci-edge train --stage 1 --task recon --config stage1_fem
	$(VENV)/bin/sci-edge train --stage 2 --task cls --config stage2_cls \
		--export-weights sci_edge/weights/sci_cls.pt
	$(VENV)/bin/sci-edge train --stage 2 --task recon --config stage2_recon \
		--export-weights sci_edge/weights/sci_recon.pt

clean:
	rm -rf build demo_out .pytest_cache sci_edge/_kernels/*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info

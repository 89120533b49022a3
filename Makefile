# Two commands on a fresh clone: `make demo` and `make test`.
# Each creates .venv if missing and installs the package (compiling the kernels).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sci_edge_installed
EXTRAS ?= dev,train,export,eval

.PHONY: all install demo test test-fast bench weights weights-reach weights-rate weights-cpu \
	weights-codec clean \
	distclean

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

# The shipped codec: stage 3 / codec on the shipped recon model's FEM features, then
# stage 3 / recon (encoder frozen; decoder and cloud side fine-tuned on decoded
# features). CPU, 40 min of training time each; feature caches are built first.
weights-codec: $(STAMP)
	$(VENV)/bin/sci-edge train --stage 3 --task codec --config stage3_codec \
		--set workers=0 --set threads=2
	$(VENV)/bin/sci-edge train --stage 3 --task recon --config stage3_recon \
		--set workers=0 --set threads=2 --export-weights sci_edge/weights/sci_codec.pt

# Reproduce the shipped weights: the commands README lists, in order. Steps 2-4 ran on a
# GPU with fixed time budgets; on a CPU the same budgets give far fewer steps.
SE := $(VENV)/bin/sci-edge train
weights: $(STAMP)
	$(SE) --stage 1 --task recon --config stage1_fem
	$(SE) --stage 2 --task recon --config stage2_recon_gpu_k3
	$(SE) --stage 2 --task cls --config stage2_cls_gpu
	$(SE) --stage 1 --task recon --config stage1_fem --init runs/stage1_fem/final.pt \
		--out-dir runs/stage1_sharp --time-budget 80 --set laplacian_weight=0.005 \
		--set data.size=[96,96] --set optim.batch=32 --set optim.warmup=20 \
		--set optim.steps=1000000 --set workers=14 --set threads=2
	$(SE) --stage 2 --task recon --config stage2_recon_gpu_k3 --init runs/stage1_sharp/final.pt \
		--init-cloud runs/stage2_recon_gpu_k3/final.pt --out-dir runs/recon_sharp \
		--time-budget 130 --set optim.lr=5e-4 --set optim.warmup=50 --set workers=9
	$(SE) --stage 2 --task cls --config stage2_cls_gpu --init runs/stage1_sharp/final.pt \
		--init-cloud runs/stage2_cls_gpu/final.pt --out-dir runs/cls_sharp \
		--time-budget 130 --set optim.lr=3e-4 --set optim.warmup=50 --set workers=5
	$(SE) --stage 2 --task cls --config stage2_cls_gpu --init runs/stage1_sharp/final.pt \
		--init-cloud runs/cls_sharp/final.pt --out-dir runs/cls_k3 --time-budget 3000 \
		--set model.analysis.neighbors=3 --set model.analysis.stride=5 --set optim.batch=32 \
		--set optim.lr=3e-4 --set optim.warmup=20 --set workers=1 --set threads=2 \
		--set data.val_items=500
	$(SE) --stage 2 --task cls --config stage2_cls_gpu --init runs/stage1_sharp/final.pt \
		--init-cloud runs/cls_k3/final.pt --out-dir runs/cls_robust --time-budget 2400 \
		--set model.analysis.neighbors=3 --set model.analysis.stride=5 --set optim.batch=32 \
		--set optim.lr=2e-4 --set optim.warmup=20 --set workers=1 --set threads=2 \
		--set data.val_items=500 --set data.smnist_speeds=[0.0,0.4] \
		--set data.smnist_alpha=[0.4,1.0] --set data.seed=7 \
		--export-weights sci_edge/weights/sci_cls.pt
	$(SE) --stage 2 --task recon --config stage2_recon_gpu_k3 --init runs/stage1_sharp/final.pt \
		--init-cloud runs/recon_sharp/final.pt --out-dir runs/recon_lowlight --time-budget 2400 \
		--set data.alpha=[0.05,0.9] --set data.size=[64,64] --set optim.batch=8 \
		--set optim.lr=2e-4 --set optim.warmup=20 --set workers=1 --set threads=2 \
		--set data.seed=21 --export-weights sci_edge/weights/sci_recon.pt
	$(MAKE) weights-reach
	$(MAKE) weights-rate

# The recon model's long-reach propagation, trained on top of the shipped windowed
# model (frozen), exported by reference to it (CPU, 55 min).
weights-reach: $(STAMP)
	$(SE) --stage 2 --task recon --config stage2_propagate \
		--export-weights sci_edge/weights/sci_recon_reach.pt

# The recon model's long-reach rate integration of the stream's spike counts, trained
# on top of the shipped windowed model (frozen) in three parts (CPU, 45 + 25 min, then
# the blend alone: 30 min for its input cache, 5 for 3000 steps), exported by
# reference to it.
weights-rate: $(STAMP)
	$(SE) --stage 2 --task recon --config stage2_rate
	$(SE) --stage 2 --task recon --config stage2_rate_tune
	$(SE) --stage 2 --task recon --config stage2_rate_blend \
		--export-weights sci_edge/weights/sci_recon_rate.pt

# The CPU-only recipe (smaller analysis; README gives its figures).
weights-cpu: $(STAMP)
	$(SE) --stage 1 --task recon --config stage1_fem
	$(SE) --stage 2 --task cls --config stage2_cls --out-dir runs/stage2_cls
	$(SE) --stage 2 --task recon --config stage2_recon --out-dir runs/stage2_recon

clean:
	rm -rf build demo_out .pytest_cache sci_edge/_kernels/*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info

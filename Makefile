# LatentBrush: `make run` starts the app, `make test` runs the whole suite. Both create/update .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt 2>/dev/null | md5sum | cut -c1-12)
RUN_STAMP := $(VENV)/.run-$(REQ_HASH)
DEV_STAMP := $(VENV)/.dev-$(REQ_HASH)

.PHONY: run test install install-dev browser bench clean train-face64 train-cat64

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP) browser

# Headless Chromium for the browser tests (Debian packages; never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

run: $(RUN_STAMP)
	$(PY) -m app

test: install-dev
	$(PY) -m pytest -q tests

bench: $(RUN_STAMP)
	$(PY) -m engine.bench

# The bundled models' training lines (models/TRAINING.md), one CPU thread each, in the foreground (wrap in nohup to
# leave one running). The same command every session: it goes on from $(TRAIN_ROOT)/NAME/state.pt when the machine was
# kept, else from the shipped weights; every snapshot's export is kept in $(TRAIN_ROOT)/NAME/snaps for engine.candidate.
TRAIN_ROOT ?= ../train
TRAIN_LINE = OMP_NUM_THREADS=1 $(PY) -m models.train --continue --threads 1 --pl-weight 2 --augment color translation \
	--metric-kimg 24 --metric-fake 240 --snapshot-min 8 --kimg 100000

train-face64: $(RUN_STAMP)
	$(TRAIN_LINE) --data ../shared/data/faces-utk-128 --resume-model assets/models/face64.safetensors --lr 0.001 \
	  --metric mobilenet dlib-face \
	  --out $(TRAIN_ROOT)/face64 --export $(TRAIN_ROOT)/face64/face64.safetensors --keep-exports $(TRAIN_ROOT)/face64/snaps \
	  --licence "UTKFace: non-commercial research purposes only"

train-cat64: $(RUN_STAMP)
	$(TRAIN_LINE) --data ../shared/data/cats-afhq-128 --resume-model assets/models/cat64.safetensors --lr 0.0025 \
	  --metric mobilenet \
	  --out $(TRAIN_ROOT)/cat64 --export $(TRAIN_ROOT)/cat64/cat64.safetensors --keep-exports $(TRAIN_ROOT)/cat64/snaps \
	  --licence "CC BY-NC 4.0 (AFHQ cats; non-commercial use only)"

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts

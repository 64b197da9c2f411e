# LatentBrush: `make run` starts the app, `make test` runs the whole suite. Both create/update .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-dev.txt 2>/dev/null | md5sum | cut -c1-12)
RUN_STAMP := $(VENV)/.run-$(REQ_HASH)
DEV_STAMP := $(VENV)/.dev-$(REQ_HASH)

.PHONY: run test install install-dev browser bench clean

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

clean:
	rm -rf $(VENV) .pytest_cache tests/artifacts

# Two commands on a fresh machine:
#   make demo   set up .venv, train on the built-in scene (no downloads), then
#               render a 360-degree orbit video of it
#   make test   set up .venv, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test browser clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py --config demo.py
	$(PY) render.py --ckpt runs/demo --frames 120

# The tests run on every core (at most 4 workers): on 2 cores the suite takes
# about 7 minutes instead of 11.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses=4

# Debian's Chromium and ChromeDriver, for the viewer's browser test
# (tests/test_viewer.py skips it, saying why, where they are absent).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver || \
	  ( $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver )

clean:
	rm -rf runs

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

# The tests run on every core plus one (at most 4 workers): many tests wait
# on a subprocess, a browser or a signal with a core idle, and the extra
# worker fills it (on 2 cores: 598 s with 3 workers, 692 s with 2).
# Work stealing: a worker that runs out takes queued tests from the others,
# so the minute-long tests do not leave one worker finishing alone.
WORKERS := $(shell $(PYTHON) -c "import os; print(min(4, (os.cpu_count() or 1) + 1))")
test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal --durations=20

# Debian's Chromium and ChromeDriver, for the viewer's browser test
# (tests/test_viewer.py skips it, saying why, where they are absent).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver || \
	  ( $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver )

clean:
	rm -rf runs

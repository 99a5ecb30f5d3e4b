# Two commands on a fresh machine:
#   make demo   set up .venv, train on the built-in scene (no downloads)
#   make test   set up .venv, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test benchmarks clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py --config demo.py

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf runs

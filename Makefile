# natlink: two commands on a fresh machine:  make setup && make demo   ;   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: setup demo test test-fast package bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/natlink demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

package: $(STAMP)
	$(PY) deploy/package.py

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

clean:
	rm -rf output build dist *.egg-info src/*.egg-info .pytest_cache

# natlink: two commands on a fresh machine:  make setup && make demo   ;   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# natlink's JVM functions (HMAC-SHA256), built with javac against the installed pyspark; not in git.
JVM_JAR := src/natlink/data/natlink-jvm.jar
JVM_SOURCES := $(shell find jvm/src/main/java -name '*.java' 2>/dev/null)
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: setup demo test test-slow test-all package bench clean

setup: $(STAMP) $(JVM_JAR)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Without a JDK this warns and natlink falls back to Spark's native HMAC composition.
$(JVM_JAR): $(STAMP) $(JVM_SOURCES) deploy/build_jvm.py
	$(PY) deploy/build_jvm.py

demo: setup
	$(VENV)/bin/natlink demo

# The default suite: everything but the tests marked slow (long end-to-end runs) or cluster
# (a real standalone Spark cluster). CI runs `make test` and then `make test-slow`.
test: setup
	$(PY) -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -m "slow or cluster" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

package: $(STAMP)
	$(PY) deploy/package.py  # builds the JVM jar first (deploy/build_jvm.py)


clean:
	rm -rf output build dist *.egg-info src/*.egg-info .pytest_cache

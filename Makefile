# natlink: two commands on a fresh machine:  make setup && make demo   ;   make test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# natlink's JVM functions (HMAC-SHA256), built with javac against the installed pyspark; not in git.
JVM_JAR := src/natlink/data/natlink-jvm.jar
JVM_SOURCES := $(shell find jvm/src/main/java -name '*.java' 2>/dev/null)
# delta-spark's jars (and the few it needs beyond Spark's own), fetched from Maven with mvn; not in git.
DELTA_JARS := jars/delta/.fetched
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: setup demo test test-slow test-all package bench clean

# Hands-off: nothing outside this folder is changed. The `natlink` command is in .venv/bin;
# `source .venv/bin/activate` puts it on PATH for the shell (README: "Link your own data").
setup: $(STAMP) $(JVM_JAR) $(DELTA_JARS)
	@echo "natlink is installed: $(abspath $(VENV))/bin/natlink. Put it on PATH with: source $(VENV)/bin/activate"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Without a JDK this warns and natlink falls back to Spark's native HMAC composition.
$(JVM_JAR): $(STAMP) $(JVM_SOURCES) deploy/build_jvm.py
	$(PY) deploy/build_jvm.py

$(DELTA_JARS): $(STAMP) jvm/delta/pom.xml deploy/fetch_jars.py
	$(PY) deploy/fetch_jars.py
	touch $(DELTA_JARS)

demo: setup
	$(VENV)/bin/natlink demo

# The default suite: everything but the tests marked slow (long end-to-end runs) or cluster
# (a real standalone Spark cluster). CI runs `make test` and then `make test-slow`.
# Test files run on PYTEST_WORKERS processes (pytest-xdist, one file per worker at a time, so a
# module's fixtures are built once); most of a Spark test's time is latency, not CPU, so two
# workers on two cores take about half the time. PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= 2
PYTEST_RUN := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup
	$(PYTEST_RUN) -m "not slow and not cluster" $(PYTEST_ARGS)

test-slow: setup
	$(PYTEST_RUN) -m "slow or cluster" $(PYTEST_ARGS)

test-all: setup
	$(PYTEST_RUN) $(PYTEST_ARGS)

package: $(STAMP) $(DELTA_JARS)
	$(PY) deploy/package.py  # builds the JVM jar first (deploy/build_jvm.py)


clean:
	rm -rf output build dist jars *.egg-info src/*.egg-info .pytest_cache

# Two commands on a fresh machine: `make demo` (set up, then run the main job on the
# embedded broker, embedder and judge) and `make test` (set up, then run the tests).
# Both install into the project's own virtual environment (.venv, Python 3.11), never
# into the system's Python.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
# As an activated venv would: its console scripts (dialin, hadolint) come first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv install tools demo test bench

venv:
	bash deploy/make-venv.sh $(VENV)

install: venv
	# The local CPU wheel first, or pip resolves a multi-GB CUDA build of torch.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,bench,deploy,finetune]'

tools: venv
	PYTHON=$(PYTHON) bash deploy/install-tools.sh

demo: install
	$(VENV)/bin/dialin demo

test: install tools
	$(PYTHON) -m pytest -q -ra

bench: install
	$(PYTHON) bench/quality.py

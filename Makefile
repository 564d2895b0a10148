# Two commands on a fresh machine: `make demo` (set up, then run the main job on the
# embedded broker, embedder and judge) and `make test` (set up, then run the tests).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install tools demo test bench

install:
	# The local CPU wheel first, or pip resolves a multi-GB CUDA build of torch.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,bench,deploy]'

tools:
	bash deploy/install-tools.sh

demo: install
	dialin demo

test: install tools
	$(PYTHON) -m pytest -q -ra

bench: install
	$(PYTHON) bench/quality.py

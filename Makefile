# Offline multimodal recommendation pipeline. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= pipelines/presets/demo.toml
ENGINE ?= prefect
PYTEST_ARGS ?=

# Offline by design: weights come from installed packages or the local HF cache, never a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.DEFAULT_GOAL := help
.PHONY: help install demo-data validate extract train test bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the project (redone only when pyproject.toml changes)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo-data: install ## generate the embedded demo catalog under data/demo (when absent)
	$(PY) -m pipelines demo-data --config $(CONFIG)

extract: install ## embed the catalog (CONFIG=path; the demo by default), incrementally
	$(PY) -m pipelines extract --config $(CONFIG) --engine $(ENGINE)

train: install ## fuse, rank, evaluate and publish a run (CONFIG=path)
	$(PY) -m pipelines train --config $(CONFIG) --engine $(ENGINE)

test: install ## run the test suite (fails if no test ran)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: install ## speed benchmarks (ratios against a same-process baseline)
	@echo "make bench: not available yet (lands with the benchmarks issue)" >&2; exit 1

clean: ## remove the venv, generated demo data and the store
	rm -rf $(VENV) data store .pytest_cache

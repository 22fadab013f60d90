# Offline multimodal recommendation pipeline. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= pipelines/presets/demo.toml
ENGINE ?= prefect
PYTEST_ARGS ?=
BENCH_ARGS ?=
# The nightly schedule: a real Prefect server on loopback (`make server`) and the deployment served against it.
PREFECT_PORT ?= 4200
PREFECT_SERVER_HOME ?= $(CURDIR)/.prefect
CRON ?= 0 2 * * *
TIMEZONE ?=

# Offline by design: weights come from installed packages or the local HF cache, never a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.DEFAULT_GOAL := help
.PHONY: help install demo-data validate extract train server serve lint test bench bench-gpu clean

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

server: install ## run a Prefect server on 127.0.0.1:PREFECT_PORT (4200), in the foreground (Ctrl-C stops it)
	PREFECT_HOME=$(PREFECT_SERVER_HOME) $(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

serve: install ## serve the nightly deployment on CRON (0 2 * * *, UTC or TIMEZONE) against `make server`
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} \
	$(PY) -m pipelines serve --config $(CONFIG) --cron "$(CRON)" $(if $(TIMEZONE),--timezone $(TIMEZONE))

lint: install ## ruff over the whole tree (config in pyproject.toml)
	$(VENV)/bin/ruff check .

test: install ## run the test suite (fails if no test ran)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: install ## speed benchmarks, ratios against a same-process baseline (BENCH_ARGS=--quick, --only topk)
	$(PY) -m bench.run $(BENCH_ARGS)

bench-gpu: install ## extractor benchmarks on CUDA, fp32 vs bf16 (on a GPU machine; without one it says so)
	$(PY) -m bench.gpu

clean: ## remove the venv, generated demo data and the store
	rm -rf $(VENV) data store .pytest_cache

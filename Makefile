# Every developer command of tripflow. `make help` lists them.
SHELL := /bin/bash
BIN := .venv/bin
TRIPFLOW := $(BIN)/tripflow
SAMPLE := data/sample/trips.csv
PORT ?= 50555
# Benchmark size (`make bench-query ROWS=100000000`).
ROWS ?= 10000000
# Trip order of the scale run's files (time: each file the days after the previous one, as a
# feed; spread: every file over the whole year) and of the ingest benchmark's increments.
ORDER ?= time
INCREMENT_ORDER ?= spread,time
# `make run LAKE=hdfs` (and the same for every other target): the lake on the local HDFS.
LAKE ?= local
ifeq ($(LAKE),hdfs)
export TRIPFLOW_LAKE_URL ?= hdfs://127.0.0.1:8020/tripflow
endif
# `make run PROFILE=cloud` (and the same for every other target): the settings of
# profiles/cloud.env, exported (S3 + bucket events + Spark cluster + Celery, on loopback).
PROFILE ?= local
ifneq ($(PROFILE),local)
ifeq ($(wildcard profiles/$(PROFILE).env),)
$(error no profile profiles/$(PROFILE).env)
endif
include profiles/$(PROFILE).env
export $(shell sed -n 's/^\(TRIPFLOW_[A-Z0-9_]*\)=.*/\1/p' profiles/$(PROFILE).env)
PORT := $(TRIPFLOW_API_PORT)
AIRFLOW_PORT := $(TRIPFLOW_AIRFLOW_PORT)
STATE_DIR := $(TRIPFLOW_HOME)
endif
AIRFLOW_PORT ?= 8080
STATE_DIR ?= .tripflow

.PHONY: help setup lint format test run up status add-file ingest serve down psql clean \
	bench-setup bench-ingest bench-query bench-groups bench-api bench-scale bench-latency

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install what is missing (Java, PostgreSQL + PostGIS, uv, the Python environment)
	@scripts/setup.sh

lint: setup ## ruff (check + format) and mypy
	$(BIN)/ruff check src tests dags benchmarks
	$(BIN)/ruff format --check src tests dags benchmarks
	$(BIN)/mypy

format: setup ## Format and autofix
	$(BIN)/ruff format src tests dags benchmarks
	$(BIN)/ruff check --fix src tests dags benchmarks

test: lint ## Lint, then every test (real PostgreSQL/PostGIS and Spark, started by the tests)
	$(BIN)/pytest

run: setup ## The whole local stack up, the sample through the DAG, one answer from the API
	@$(TRIPFLOW) up
	@echo
	@echo "Adding the sample; the DAG picks it up (progress pushed by PostgreSQL):"
	@$(TRIPFLOW) add-file --wait $(SAMPLE)
	@echo
	@echo "Weekly average of trips in a box around Prague, both ends inside:"
	@curl -s "http://127.0.0.1:$(PORT)/weekly-average?bbox=14.2,49.9,14.7,50.2" | $(BIN)/python -m json.tool --compact
	@echo
	@echo "Web page:    http://127.0.0.1:$(PORT)/  (in a browser: map, weekly chart, live ingestions)"
	@echo "API:         http://127.0.0.1:$(PORT)/  (endpoints listed there; /openapi.json, /ingestions)"
	@echo "Airflow UI:  http://127.0.0.1:$(AIRFLOW_PORT)/  (admin / admin; DAG tripdata-process)"
	@echo "psql:        psql \"\$$($(TRIPFLOW) db url)\" -c 'SELECT count(*) FROM staging_tripdata' -c 'SELECT count(*) FROM tripdata'"
	@echo "Status:      $(TRIPFLOW) status     Live ingestion events: $(TRIPFLOW) watch"
	@echo "Stop:        make down$(if $(filter-out local,$(PROFILE)), PROFILE=$(PROFILE))"

add-file: setup ## Put the sample into the landing dir and follow it until loaded
	$(TRIPFLOW) add-file --wait $(SAMPLE)

ingest: setup ## Ingest whatever waits in the landing dir
	$(TRIPFLOW) ingest

serve: setup ## Serve the API in the foreground
	$(TRIPFLOW) serve --port $(PORT)

up: setup ## Start the local stack (PostgreSQL, Airflow, API)
	$(TRIPFLOW) up

status: ## Show the services and the latest ingestion batches
	$(TRIPFLOW) status

down: ## Stop the whole local stack
	@$(TRIPFLOW) down

psql: ## Open psql on the warehouse
	psql "$$($(TRIPFLOW) db url)"

clean: down ## Stop everything and delete the local state (.tripflow, or the profile's, and the database's data)
	-@if [ -x $(TRIPFLOW) ]; then $(TRIPFLOW) db remove --yes; fi
	rm -rf $(STATE_DIR)

bench-setup: setup
	@scripts/bench-setup.sh

bench-ingest: bench-setup ## Ingest benchmark: tripflow vs the seed's path vs one COPY (ROWS=...)
	$(BIN)/python benchmarks/ingest.py --rows $(ROWS) --increment-order $(INCREMENT_ORDER)

bench-query: bench-setup ## Query benchmark: cold p50/p95 vs plain DuckDB and brute force (ROWS=...)
	$(BIN)/python benchmarks/query.py --rows $(ROWS)

bench-groups: bench-setup ## Similar-trip groups: segment writing with and without them, /trip-groups questions (ROWS=...)
	$(BIN)/python benchmarks/groups_query.py --rows $(ROWS)

bench-api: bench-setup ## API load benchmark with wrk against `tripflow serve` (ROWS=...)
	$(BIN)/python benchmarks/api_load.py --rows $(ROWS)

bench-scale: bench-setup ## Scale run: generate ROWS trips (ORDER=time|spread), ingest them batch by batch, record sizes
	$(BIN)/python benchmarks/scale.py --rows $(ROWS) --order $(ORDER) --files $$(( $(ROWS) > 10000000 ? $(ROWS) / 10000000 : 1 ))

bench-latency: bench-setup ## Latency: a ~1 MB file landed -> queryable through the DAG, spark-submit vs Spark Connect
	$(BIN)/python benchmarks/landing_latency.py

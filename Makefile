# Every developer command of tripflow. `make help` lists them.
SHELL := /bin/bash
BIN := .venv/bin
TRIPFLOW := $(BIN)/tripflow
SAMPLE := data/sample/trips.csv
PORT ?= 50555

.PHONY: help setup lint format test test-fast run add-file ingest serve down db-start psql clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## Install what is missing (Java, PostgreSQL + PostGIS, uv, the Python environment)
	@scripts/setup.sh

lint: setup ## ruff (check + format) and mypy
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: setup ## Format and autofix
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: lint ## Lint, then every test (real PostgreSQL/PostGIS and Spark, started by the tests)
	$(BIN)/pytest

run: setup ## Database up, sample ingested, API started, one answer printed
	@$(TRIPFLOW) db start
	@$(TRIPFLOW) add-file $(SAMPLE) || true
	@$(TRIPFLOW) ingest
	@$(TRIPFLOW) serve --detach --port $(PORT)
	@echo "Weekly average of trips in a box around Prague, both ends inside:"
	@curl -s "http://127.0.0.1:$(PORT)/weekly-average?bbox=14.2,49.9,14.7,50.2" | $(BIN)/python -m json.tool
	@echo
	@echo "API:        http://127.0.0.1:$(PORT)/  (endpoints listed there; /openapi.json)"
	@echo "Ingestions: http://127.0.0.1:$(PORT)/ingestions"
	@echo "psql:       psql \"\$$($(TRIPFLOW) db url)\" -c 'SELECT count(*) FROM tripdata'"
	@echo "Stop:       make down"

add-file: setup ## Put the sample file into the landing dir
	$(TRIPFLOW) add-file $(SAMPLE)

ingest: setup ## Ingest whatever waits in the landing dir
	$(TRIPFLOW) ingest

serve: setup ## Serve the API in the foreground
	$(TRIPFLOW) serve --port $(PORT)

down: ## Stop the API and the managed database
	@$(TRIPFLOW) stop

psql: ## Open psql on the warehouse
	psql "$$($(TRIPFLOW) db url)"

clean: down ## Stop everything and delete the local state (.tripflow)
	rm -rf .tripflow

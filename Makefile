# Everything a developer or CI runs. `make test` and `make demo` set up what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
SYNCED := $(VENV)/.synced
# The BigQuery emulator needs Python 3.13 (pyenv has one on these machines).
PYTHON313 ?= $(shell for p in $(HOME)/.pyenv/versions/3.13*/bin/python3.13 python3.13; do \
	"$$p" -c '' 2>/dev/null && { echo "$$p"; break; }; done)
# The other Airflow of the support matrix (README): its own lock and venv; `make test` runs
# the tests marked `matrix` under it too.
AIRFLOW_322 := .local/airflow-3.2.2
AIRFLOW_322_SYNCED := $(AIRFLOW_322)/.synced
BQ_VENV := .local/bq-emulator
BQ_SYNCED := $(BQ_VENV)/.synced
DUCKDB_EXTENSIONS := .local/bq-home/.duckdb/extensions/v1.5.5/linux_amd64
# The browser test drives Debian's Chromium (Playwright downloads no browser here).
CHROMIUM := /usr/bin/chromium
# Every local Airflow keeps its metadata DB in Debian's PostgreSQL 15 (tools/postgres.py).
POSTGRES := /usr/lib/postgresql/15/bin/postgres
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv bq-emulator googlesql lock test lint format bench bench-scale chaos demo demo-down deploy provision simulator clean

help:
	@echo "make test       set up the venv from the lock file, lint, run all tests"
	@echo "make demo       the whole pipeline on local stand-ins under a real Airflow; left running"
	@echo "make demo-down  stop every process make demo started"
	@echo "make bench      CDN API client speed, worker memory, DAG file import cost (prints figures)"
	@echo "make bench-scale  10,000 domains x one window through the ingest DAG (prints figures)"
	@echo "make chaos      a one-hour catchup with every fault on, checked against the truth"
	@echo "make deploy     ENV=<local|dev|prod> BUCKET=gs://<bucket> COMPOSER=<env> LOCATION=<region> [DRY_RUN=1]: bundle -> Composer"
	@echo "make provision  ENV=<local|dev|prod> AIRFLOW_URL=<url> [DRY_RUN=1]: pools + connection check via /api/v2"
	@echo "make simulator  run the CDN API simulator in the foreground (SIM_ARGS=...)"
	@echo "make lint       ruff check and format check"
	@echo "make lock       re-resolve requirements-dev.lock from requirements-dev.in"

venv: $(SYNCED)

$(SYNCED): requirements-dev.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements-dev.lock
	touch $@

$(AIRFLOW_322_SYNCED): requirements-airflow-3.2.2.lock $(SYNCED)
	test -x $(AIRFLOW_322)/bin/python || $(VENV)/bin/uv venv -q --python $(PY) $(AIRFLOW_322)
	$(VENV)/bin/uv pip sync -q --python $(AIRFLOW_322)/bin/python requirements-airflow-3.2.2.lock
	touch $@

bq-emulator: $(BQ_SYNCED)

$(BQ_SYNCED): requirements-bq-emulator.lock $(SYNCED)
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is needed for the BigQuery emulator"; exit 1; }
	test -x $(BQ_VENV)/bin/python || $(VENV)/bin/uv venv -q --python $(PYTHON313) $(BQ_VENV)
	$(VENV)/bin/uv pip sync -q --python $(BQ_VENV)/bin/python requirements-bq-emulator.lock
	mkdir -p $(DUCKDB_EXTENSIONS)
	cp $(BQ_VENV)/lib/python3.13/site-packages/duckdb_extension_*/extensions/v1.5.5/*.duckdb_extension $(DUCKDB_EXTENSIONS)/
	touch $@

# Google's GoogleSQL analyzer (tests/test_googlesql.py): compiled once into .local/zetasql/.
googlesql: venv
	$(PY) -m tools.googlesql

lock: venv
	$(VENV)/bin/uv pip compile -q requirements-dev.in --python-version 3.11 -o requirements-dev.lock
	$(VENV)/bin/uv pip compile -q requirements-airflow-3.2.2.in --python-version 3.11 \
		-o requirements-airflow-3.2.2.lock
	$(VENV)/bin/uv pip compile -q requirements-bq-emulator.in --python-version 3.13 \
		--override requirements-bq-emulator.override -o requirements-bq-emulator.lock

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# No system cluster: the project's tools start their own servers, on free ports.
$(POSTGRES):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-common
	$(SUDO) sed -ri 's/^#?create_main_cluster .*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15

test: lint bq-emulator googlesql $(CHROMIUM) $(POSTGRES) $(AIRFLOW_322_SYNCED)
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(AIRFLOW_322)/bin/python -m pytest -m matrix -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(PY) -m tools.bench_cdn_client
	$(PY) -m tools.bench_memory
	$(PY) -m tools.bench_dag_parse

bench-scale: venv bq-emulator $(POSTGRES)
	$(PY) -m tools.bench_scale

chaos: venv bq-emulator $(POSTGRES)
	$(PY) -m tools.chaos

deploy: venv
	@test -n "$(ENV)" -a -n "$(BUCKET)" || { echo "usage: make deploy ENV=<local|dev|prod> BUCKET=gs://<bucket> COMPOSER=<environment> LOCATION=<region> [DRY_RUN=1]"; exit 2; }
	$(PY) -m tools.deploy --env $(ENV) --bucket $(BUCKET) $(if $(COMPOSER),--composer $(COMPOSER) --location $(LOCATION)) $(if $(DRY_RUN),--dry-run)

provision: venv
	@test -n "$(ENV)" -a -n "$(AIRFLOW_URL)" || { echo "usage: make provision ENV=<local|dev|prod> AIRFLOW_URL=<url> [SECRETS_PROJECT=<project>] [DRY_RUN=1]"; exit 2; }
	CDN_ENV=$(ENV) $(PY) -m tools.provision --airflow-url $(AIRFLOW_URL) $(if $(SECRETS_PROJECT),--secrets-project $(SECRETS_PROJECT)) $(if $(DRY_RUN),--dry-run)

demo: venv bq-emulator $(POSTGRES)
	$(PY) -m tools.demo up

demo-down: venv
	$(PY) -m tools.demo down

simulator: venv
	$(PY) -m tools.cdn_api_simulator --port 8700 $(SIM_ARGS)

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache

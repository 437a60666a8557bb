# Pathways: the two commands are `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PY ?= python3
UV := $(PY) -m uv
VENV := .venv
SERVICES := referrals providers cohorts notifications insights

.DEFAULT_GOAL := help
.PHONY: help install run test infra browser token demo bench lint clean docs $(addprefix test-,$(SERVICES)) test-shared test-system test-deploy test-calendar

help: ## Show the targets
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 22

install: $(VENV)/.installed node_modules/.installed ## Install uv, the workspace (locked) and the front-end packages (npm, locked)

$(VENV)/.installed: uv.lock pyproject.toml shared/pyproject.toml $(wildcard services/*/pyproject.toml)
	@PY=$(PY) scripts/ensure-uv.sh
	$(UV) sync --all-packages --frozen --quiet
	@touch $@

# GOV.UK Frontend (served by the insights dashboard), axe-core (its browser tests), Redocly CLI and the
# AsyncAPI parser (the contract checks of shared/tests/test_published_documents.py), pinned in
# package-lock.json; `npm ci` installs exactly the lock, dev packages included.
node_modules/.installed: package.json package-lock.json
	@scripts/ensure-node.sh
	SCARF_ANALYTICS=false npm ci --include=dev --no-audit --no-fund --loglevel=error
	@touch $@

browser: ## Make sure Debian's Chromium is installed (the dashboard's browser tests)
	@scripts/ensure-browser.sh

run: install ## Start NATS and all five services on SQLite (Ctrl-C stops everything)
	@scripts/run.sh

test: install infra browser ## Install, start PostgreSQL and NATS (and Chromium) if needed, run every test (and the calendar pass)
	@scripts/test.sh

test-calendar: install infra browser ## The shared and service tests again, the clock moved a year on, to 29 Feb 2028, past a clock change
	@scripts/test.sh --calendar

infra: ## Make sure PostgreSQL and NATS (JetStream) are up
	@scripts/ensure-infra.sh

test-shared: install infra ## Tests of the shared package
	@scripts/test.sh shared

test-deploy: install infra ## Deployment checks: manifests, images, NATS permissions
	@scripts/test.sh deploy

test-system: install infra ## Cross-service tests (tests/)
	@scripts/test.sh system

$(addprefix test-,$(SERVICES)): test-%: install infra browser ## Tests of one service
	@scripts/test.sh $*

token: install ## Mint a local token: make token ROLE=probation [PROVIDER=NACRO] [AREAS=E08000029]
	@$(VENV)/bin/pathways token --role $(or $(ROLE),probation) \
		$(if $(PROVIDER),--provider $(PROVIDER)) $(if $(AREAS),--areas $(AREAS))

bench: install infra ## Run the benchmarks in bench/ (prints medians; `GOAL` lines: MET or MISSED)
	@for b in bench/bench_*.py bench/cpu_per_referral.py; do echo "==> $$b"; $(VENV)/bin/python $$b || exit 1; done

docs: install ## Regenerate docs/asyncapi.json and docs/openapi/*.json from the code
	@$(VENV)/bin/pathways asyncapi > docs/asyncapi.json && echo "wrote docs/asyncapi.json"
	@$(VENV)/bin/python scripts/export_openapi.py

lint: install ## ruff over the workspace
	$(VENV)/bin/ruff check shared services tests bench

clean: ## Remove the local SQLite databases, NATS storage and logs of `make run`
	rm -rf .data

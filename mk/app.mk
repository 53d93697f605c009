# The extraction service in app/ (issue 5): its own venv, lint, tests against real PostgreSQL and
# Redis, and a load test. The service's venv is app/.venv, separate from the toolkit's .venv.

APP_DIR    := app
APP_VENV   := $(APP_DIR)/.venv
APP_BIN    := $(CURDIR)/$(APP_VENV)/bin
# Debian packages the app tests need on the controller (servers started by the tests, OCR, wrk).
APP_APT    := postgresql redis-server tesseract-ocr tesseract-ocr-por fonts-dejavu-core wrk
APP_PYTEST ?=
BENCH_SECONDS ?= 10
BENCH_INVOICES ?= 3000
BENCH_ROUNDS ?= 3

##@ The app (app/)

.PHONY: app-setup app-apt
app-setup: $(APP_VENV)/.installed app-apt ## app/.venv with the service and its test extra; apt packages the tests need

# The Debian packages alone (make unit needs redis-server too: the redis role's config check).
app-apt:
	@missing=""; for pkg in $(APP_APT); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then echo "app-setup: missing Debian packages:$$missing (run as root)"; exit 1; fi; \
	  echo "app-setup: apt-get install$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(APP_VENV)/.installed: $(APP_DIR)/pyproject.toml
	@test -x $(APP_BIN)/python || $(PYTHON) -m venv $(APP_VENV)
	$(APP_BIN)/python -m pip install --quiet --upgrade pip
	$(APP_BIN)/python -m pip install --quiet -e '$(APP_DIR)[test]'
	@touch $@

.PHONY: app-lint
app-lint: app-setup ## ruff check and ruff format --check of app/ (the app's own ruff config)
	cd $(APP_DIR) && $(APP_BIN)/ruff check . && $(APP_BIN)/ruff format --check .

.PHONY: app-test
app-test: app-setup ## The app's tests against throwaway PostgreSQL and Redis (APP_PYTEST=... for pytest args)
	@start=$$(date +%s); \
	cd $(APP_DIR) && $(APP_BIN)/python -m pytest $(APP_PYTEST); \
	echo "app-test: passed in $$(( $$(date +%s) - start )) s"

.PHONY: bench-app
bench-app: app-setup ## Load test (wrk) of list, dashboard and /health: production vs seed settings
	$(APP_BIN)/python $(APP_DIR)/bench/run_bench.py --seconds $(BENCH_SECONDS) --invoices $(BENCH_INVOICES) --rounds $(BENCH_ROUNDS)

TEST_PARTS += app-lint app-test

# Operations toolkit: every target is listed by `make help`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV     := .venv
BIN      := $(CURDIR)/$(VENV)/bin
PYTHON   ?= python3
ENV      ?= local
SCENARIO ?=
ANSIBLE_ARGS ?=
INVENTORY := inventories/$(ENV)/hosts.yml

export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PY_COLORS := 1
export ANSIBLE_FORCE_COLOR := 1

.PHONY: help
help: ## List every target with what it does, under its heading (##@ lines)
	@awk 'BEGIN {FS = ":.*## "} /^##@ / {printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next} \
	  /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- Setup -------------------------------------------------------------------------------------

##@ Setup

.PHONY: setup
setup: $(VENV)/.installed ## Create .venv with the pinned tooling and check the collections
	@$(BIN)/python scripts/check_collections.py requirements.yml

$(VENV)/.installed: requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

.PHONY: engine
engine: ## Make sure a Docker engine answers (installs Debian's docker.io when it can)
	@scripts/ensure-docker.sh

.PHONY: apt-cache
apt-cache: ## Run apt-cacher-ng so test hosts download each Debian package once
	@scripts/ensure-apt-cache.sh

.PHONY: images
images: engine ## Build the Debian 12/13 systemd test-host images (only when missing or changed)
	@scripts/build-images.sh

# --- Tests -------------------------------------------------------------------------------------

##@ Tests

.PHONY: lint
lint: setup ## ansible-lint (production profile), yamllint, ruff
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

.PHONY: unit
unit: setup app-apt ## Unit tests of plugins and scripts (pytest; app-apt: redis-server for the redis config check)
	pytest

# Scenarios run MOLECULE_JOBS at a time (scripts/run-molecule.sh), each with its own log.
MOLECULE_JOBS ?= 2
export MOLECULE_JOBS

.PHONY: molecule
# The production scenario deploys the packaged image: build it first (a no-op when nothing changed;
# scripts/run-molecule.sh does the same before that scenario).
molecule: setup images apt-cache $(if $(filter production split,$(SCENARIO)),package) ## Every Molecule scenario (MOLECULE_JOBS at a time), or one: make molecule SCENARIO=base
	@if [ -n "$(SCENARIO)" ]; then molecule test -s $(SCENARIO); else scripts/run-molecule.sh; fi

# Parts of `make test` in the order they run; mk/*.mk files add theirs (TEST_PARTS += ...).
TEST_PARTS := lint unit
-include mk/*.mk

.PHONY: test
# Molecule, the slowest part, starts first and runs beside the others, which mostly keep one core
# busy (its lines come as scenarios end; a failed scenario's log is printed). A failed part stops
# the Molecule run at once. The image tarball is built by the parts that use it (the production
# scenario, package-check), beside the scenarios that do not, instead of before everything.
test: setup images apt-cache ## Everything CI runs: every Molecule scenario, beside lint, unit and every mk/*.mk part
	@start=$$(date +%s); \
	setsid scripts/run-molecule.sh & molecule=$$!; \
	if ! $(MAKE) --no-print-directory $(TEST_PARTS); then \
	  kill -- -$$molecule 2>/dev/null || true; wait $$molecule || true; \
	  echo "make test: FAILED (see above; Molecule stopped)"; exit 1; \
	fi; \
	wait $$molecule || { echo "make test: FAILED in Molecule (see above)"; exit 1; }; \
	echo "make test: passed in $$(( $$(date +%s) - start )) s"

# --- Provision and deploy ----------------------------------------------------------------------

##@ Provision and deploy (ENV=local: the sandbox; ENV=production)

.PHONY: sandbox
sandbox: setup images apt-cache ## Start the local sandbox host (a systemd container standing in for the VPS, reached over SSH)
	ansible-playbook -i inventories/local/hosts.yml playbooks/sandbox.yml

.PHONY: deploy
deploy: setup ## Package the app, then provision and deploy ENV (default: the local sandbox; ENV=production)
	@start=$$(date +%s); \
	echo "make deploy: [1/3] package the app (dist/)"; \
	$(MAKE) --no-print-directory package; \
	if [ "$(ENV)" = local ]; then \
	  echo "make deploy: [2/3] start the local sandbox host"; \
	  $(MAKE) --no-print-directory sandbox; \
	else echo "make deploy: [2/3] hosts from $(INVENTORY)"; fi; \
	echo "make deploy: [3/3] playbooks/site.yml (preflight, provision, deploy)"; \
	ansible-playbook -i $(INVENTORY) playbooks/site.yml $(ANSIBLE_ARGS); \
	echo "make deploy: $(ENV) done in $$(( $$(date +%s) - start )) s"

.PHONY: clean
clean: ## Remove the sandbox host, its network and local state (keys, known_hosts; keeps .venv and images)
	-docker rm -f -v toolkit-sandbox >/dev/null 2>&1
	-docker network rm toolkit-sandbox >/dev/null 2>&1
	rm -rf .local .pytest_cache .ruff_cache

.PHONY: distclean
distclean: clean ## Also remove .venv and the test-host images
	rm -rf $(VENV)
	-docker images --format '{{.Repository}}:{{.Tag}}' 'toolkit/systemd-debian' | xargs -r docker rmi

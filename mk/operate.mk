# Day-two operations, as plain as Kamal's: ship the app alone, list and roll back releases, logs, a
# one-off command, status, stop/start/restart, the deploy lock and the audit log. Each runs against
# ENV's inventory (INVENTORY=<file> for another; HOST=<name> when it holds several hosts). Targets
# that read or act on the host run toolkit-app there (roles/app/files/toolkit_app.py) through
# scripts/on_host.py (SSH as the inventory's user with sudo: output streams, FOLLOW=1 and TTY=1
# work); the ones that change releases are playbooks, under the host's deploy lock.
HOST    ?=
SERVICE ?= api
LINES   ?= 100
FOLLOW  ?=
CMD     ?=
TTY     ?=
TO      ?=
VERSION ?=
ONLY    ?=
SWAP_ROUNDS ?= 4
SWAP_URL    ?=
# Who acts, for the host's deploy lock and audit log.
TOOLKIT_OPERATOR ?= $(shell id -un)@$(shell hostname)
export TOOLKIT_OPERATOR

ON_HOST     = $(BIN)/python scripts/on_host.py -i $(INVENTORY) $(if $(HOST),--host $(HOST))
LIMIT_ARGS  = $(if $(HOST),--limit $(HOST))
# CMD as written (make does not expand its $), inside single quotes for the shells on the way (a '
# in CMD becomes '\'').
CMD_QUOTED  = '$(subst ','\'',$(value CMD))'

##@ Operate (ENV=local|production; HOST=<name> when the inventory holds several hosts)

.PHONY: app-deploy
app-deploy: setup ## Package the app and put it live: the app role alone (VERSION=<packaged version> for another); ends a rollback's pin
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory package; \
	ansible-playbook -i $(INVENTORY) $(LIMIT_ARGS) playbooks/deploy.yml --tags app \
	  -e app_release=$(or $(VERSION),latest) $(ANSIBLE_ARGS); \
	echo "make app-deploy: $(ENV) done in $$(( $$(date +%s) - start )) s"

.PHONY: releases
releases: setup ## The host's kept releases, newest first; * marks the live one, (pinned) a rollback's pin
	@$(ON_HOST) -- toolkit-app releases

.PHONY: rollback
rollback: setup ## Put the previous release back live (TO=<version>: a kept one); the host stays pinned to it
	ansible-playbook -i $(INVENTORY) $(LIMIT_ARGS) playbooks/rollback.yml $(if $(TO),-e app_rollback_to=$(TO)) $(ANSIBLE_ARGS)

.PHONY: logs
logs: setup ## SERVICE=api|worker|traefik|postgres|redis logs (LINES=100; FOLLOW=1 follows them)
	@$(ON_HOST) $(if $(FOLLOW),--tty) -- toolkit-app logs $(SERVICE) --lines $(LINES) $(if $(FOLLOW),--follow)

.PHONY: exec
exec: setup ## CMD="..." in a fresh container of the live release, with its env and mounts (TTY=1: interactive)
	@if [ -z $(CMD_QUOTED) ]; then echo 'make exec: CMD="..." is required, e.g. make exec CMD="invoice-migrate current"'; exit 2; fi
	@$(ON_HOST) $(if $(TTY),--tty) -- toolkit-app exec $(if $(TTY),--interactive) -- sh -c $(CMD_QUOTED)

.PHONY: status
status: setup ## The live release (pinned or not), the deploy lock, containers and health, the host's checks (disk, backups, drill)
	@$(ON_HOST) -- toolkit-app status

.PHONY: app-stop app-start app-restart
app-stop: setup ## Stop the live release's containers (ONLY=api|worker: one of them); the next deploy starts them again
	@$(ON_HOST) -- toolkit-app stop $(ONLY)
app-start: setup ## Start the live release's containers (ONLY=api|worker: one of them)
	@$(ON_HOST) -- toolkit-app start $(ONLY)
app-restart: setup ## Restart the live release's containers (ONLY=api|worker: one of them)
	@$(ON_HOST) -- toolkit-app restart $(ONLY)

.PHONY: unlock
unlock: setup ## Break the host's deploy lock when the run that took it is dead (audited)
	@$(ON_HOST) -- toolkit-app unlock

.PHONY: audit
audit: setup ## The host's audit log: deploys, rollbacks, pins, stops, one-off commands, broken locks (LINES=)
	@$(ON_HOST) -- toolkit-app audit --lines $(LINES)

.PHONY: rotate-secrets
rotate-secrets: setup ## After changing secrets in the vault: PostgreSQL, Redis, the health check and the app's env in one play, the app restarted
	ansible-playbook -i $(INVENTORY) $(LIMIT_ARGS) playbooks/rotate-secrets.yml $(ANSIBLE_ARGS)

.PHONY: postgres-restart
postgres-restart: setup ## Apply a deferred PostgreSQL restart (postgres_restart_policy: defer): announced, only when one is pending
	ansible-playbook -i $(INVENTORY) $(LIMIT_ARGS) playbooks/postgres-restart.yml $(ANSIBLE_ARGS)

.PHONY: bench-swap
bench-swap: setup package ## Release swaps under a /health/ready probe every 100 ms: longest gap and failed probes per swap (SWAP_ROUNDS=4; the sandbox)
	$(BIN)/python scripts/bench_swap.py --inventory $(INVENTORY) --rounds $(SWAP_ROUNDS) $(if $(SWAP_URL),--url $(SWAP_URL))

# Backups: the restore drill against an inventory (the main Makefile's ENV, INVENTORY, ANSIBLE_ARGS).
SET ?=

##@ Backups and restores (ENV=...)

.PHONY: restore-drill
restore-drill: setup ## Restore the newest backup (or SET=<name>) into scratch on ENV's hosts, compare, report the RTO
	@start=$$(date +%s); \
	ansible-playbook -i $(INVENTORY) playbooks/restore.yml \
	  $(if $(SET),-e backup_restore_set=$(SET)) $(ANSIBLE_ARGS); \
	echo "make restore-drill: $(ENV) done in $$(( $$(date +%s) - start )) s"

# Point-in-time recovery (pgBackRest): one of TIME, BACKUP or LATEST, and CONFIRM=<database>.
TIME ?=
BACKUP ?=
LATEST ?=
REPO ?=
CONFIRM ?=

.PHONY: restore
restore: setup ## Restore ENV's PostgreSQL cluster to TIME='2026-12-01 05:30:00+00', BACKUP=<label> or LATEST=1 [REPO=1|2] (CONFIRM=<database>)
	@start=$$(date +%s); \
	ansible-playbook -i $(INVENTORY) playbooks/pitr-restore.yml \
	  -e '{"pitr_restore_time": "$(TIME)", "pitr_restore_backup": "$(BACKUP)", "pitr_restore_latest": $(if $(LATEST),true,false), "pitr_restore_repo": $(or $(REPO),0), "pitr_restore_confirm": "$(CONFIRM)"}' \
	  $(ANSIBLE_ARGS) || exit 1; \
	echo "make restore: $(ENV) done in $$(( $$(date +%s) - start )) s"

# make bench-restore: the RTO of a point-in-time restore of a generated database from each pgBackRest
# repository, on a throwaway Debian 13 host. Not part of `make test` (it measures); about 5 minutes.
RESTORE_BENCH_MB     ?= 1024
RESTORE_BENCH_ROUNDS ?= 3

.PHONY: bench-restore
bench-restore: setup images apt-cache ## RTO of toolkit-pitr restore from the local and the offsite repository (RESTORE_BENCH_MB, RESTORE_BENCH_ROUNDS)
	@RESTORE_BENCH_MB=$(RESTORE_BENCH_MB) RESTORE_BENCH_ROUNDS=$(RESTORE_BENCH_ROUNDS) scripts/bench-restore.sh

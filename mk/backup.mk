# Backups: the restore drill against an inventory (the main Makefile's ENV, INVENTORY, ANSIBLE_ARGS).
SET ?=

.PHONY: restore-drill
restore-drill: setup ## Restore the newest backup (or SET=<name>) into scratch on ENV's hosts, compare, report the RTO
	@start=$$(date +%s); \
	ansible-playbook -i $(INVENTORY) playbooks/restore.yml \
	  $(if $(SET),-e backup_restore_set=$(SET)) $(ANSIBLE_ARGS); \
	echo "make restore-drill: $(ENV) done in $$(( $$(date +%s) - start )) s"

# The monitoring role's Prometheus side, checked with the tools the hosts run: the alert rules
# (roles/monitoring/templates/etc/prometheus/rules/toolkit.rules.yml.j2) rendered with the role's
# defaults, `promtool check rules` and the promtool unit tests in tests/promtool
# (tests/unit/test_alert_rules.py); prometheus.yml and alertmanager.yml rendered by Ansible,
# `promtool check config` and `amtool check-config` (tests/unit/test_monitoring_config.py). promtool
# and amtool come from Debian's packages, extracted into .local/bin without installing them
# (scripts/get-prometheus-tools.sh). Half a minute.

##@ Tests: alert rules

.PHONY: rules-test
rules-test: setup ## Alert rules and Prometheus/Alertmanager config: promtool and amtool from Debian's packages
	@scripts/get-prometheus-tools.sh
	PROMTOOL_REQUIRED=1 $(BIN)/pytest -q -p no:cacheprovider tests/unit/test_alert_rules.py \
	  tests/unit/test_monitoring_config.py

TEST_PARTS += rules-test

# The Prometheus alert rules (roles/monitoring/templates/etc/prometheus/rules/toolkit.rules.yml.j2):
# rendered with the role's defaults, `promtool check rules` and the promtool unit tests in
# tests/promtool (tests/unit/test_alert_rules.py). promtool comes from Debian's prometheus package,
# extracted into .local/bin without installing it (scripts/get-promtool.sh). A few seconds.

##@ Tests: alert rules

.PHONY: rules-test
rules-test: setup ## Alert rules: promtool check rules and unit tests (tests/promtool), promtool from Debian's package
	@scripts/get-promtool.sh
	PROMTOOL_REQUIRED=1 $(BIN)/pytest -q -p no:cacheprovider tests/unit/test_alert_rules.py

TEST_PARTS += rules-test

# Preflight (playbooks/preflight.yml) run for real against the production inventory's own files on
# throwaway Debian 12 containers (tests/preflight): every placeholder named in one run, a filled-in
# inventory passing, a host that is not Debian 12 or 13 refused, production's rules and warnings.
PREFLIGHT_PYTEST ?=

##@ Tests: preflight

.PHONY: preflight-test
preflight-test: setup images ## Preflight against the production inventory's files on throwaway hosts (PREFLIGHT_PYTEST=-v)
	@start=$$(date +%s); \
	$(BIN)/pytest tests/preflight -p no:cacheprovider $(PREFLIGHT_PYTEST); \
	echo "preflight-test: passed in $$(( $$(date +%s) - start )) s"

TEST_PARTS += preflight-test

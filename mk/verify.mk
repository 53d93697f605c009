# `make verify`: ENV's deployed hosts checked from this controller, as an outside user sees them
# (scripts/verify.py, checks in scripts/hostcheck/). Contacts only the inventory's host addresses.
VERIFY_ARGS ?=

##@ Verify a deployed host (ENV=...)

.PHONY: verify
verify: setup ## Check ENV's deployed hosts from outside (ports, redirect, certificate, headers, limits, ssh-audit): make verify ENV=production
	$(BIN)/python scripts/verify.py --inventory $(INVENTORY) $(VERIFY_ARGS)

.PHONY: lynis
lynis: setup ## Audit ENV's host with Lynis (the hardening role installs it): its hardening index, warnings and suggestions (HOST=)
	@$(ON_HOST) -- sh -c 'lynis audit system --quick --no-colors >/dev/null 2>&1 && grep -E "^(lynis_version|hardening_index|warning\[\]|suggestion\[\])=" /var/log/lynis-report.dat'

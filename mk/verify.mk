# `make verify`: ENV's deployed hosts checked from this controller, as an outside user sees them
# (scripts/verify.py, checks in scripts/hostcheck/). Contacts only the inventory's host addresses.
VERIFY_ARGS ?=

##@ Verify a deployed host (ENV=...)

.PHONY: verify
verify: setup ## Check ENV's deployed hosts from outside (ports, redirect, certificate, headers, limits, ssh-audit): make verify ENV=production
	$(BIN)/python scripts/verify.py --inventory $(INVENTORY) $(VERIFY_ARGS)

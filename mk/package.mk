# Packaging of the extraction service (issue 5): a Docker image tarball a host without a registry
# or PyPI can load. The app's own targets (app-setup, app-lint, app-test) are in mk/app.mk.

PACKAGE_ARGS ?=
PACKAGE_PYTEST ?=

##@ Packaging

.PHONY: base-image
base-image: engine ## Build debian:trixie-slim from Debian packages (only when missing or changed)
	@scripts/build-base-image.sh

.PHONY: package
package: setup engine apt-cache ## Wheel + wheelhouse + image -> dist/invoice-service-<version>.tar.gz and .json
	@$(BIN)/python scripts/package_app.py $(PACKAGE_ARGS)

# PostgreSQL and Redis for the check run on this machine (Debian's packages, installed when missing).
.PHONY: package-check
package-check: package ## Load the tarball; its containers migrate, answer /health, run non-root (PACKAGE_PYTEST=-v)
	@if ! command -v redis-server >/dev/null || ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then \
	  echo "package-check: installing postgresql and redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null; \
	fi
	@start=$$(date +%s); \
	$(BIN)/pytest tests/package -p no:cacheprovider $(PACKAGE_PYTEST); \
	echo "package-check: passed in $$(( $$(date +%s) - start )) s"

TEST_PARTS += package-check

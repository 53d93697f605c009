# Operator docs (docs/): the variables reference is generated from the roles' argument specs.
VARIABLES_REF := docs/VARIABLES.md

##@ Docs

.PHONY: docs
docs: setup ## Regenerate docs/VARIABLES.md from roles/*/meta/argument_specs.yml and defaults
	$(BIN)/python scripts/gen_variables_reference.py --output $(VARIABLES_REF)

.PHONY: docs-check
docs-check: setup ## Fail when docs/VARIABLES.md is stale (a role's spec changed without `make docs`)
	$(BIN)/python scripts/gen_variables_reference.py --output $(VARIABLES_REF) --check

.PHONY: docs-strict
docs-strict: setup ## Also fail when a role's defaults and spec disagree or an option has no description
	$(BIN)/python scripts/gen_variables_reference.py --output $(VARIABLES_REF) --check --strict

TEST_PARTS += docs-check

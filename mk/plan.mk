# The memory budget's capacity table (group_vars/all/budget.yml, plugin_utils/memory_plan).

##@ Plan (ENV=...)

# SIZES (GB, or GB:vCPUs) adds the same budget at other host sizes, side by side.
SIZES ?=

.PHONY: plan
plan: setup ## Print the memory plan of ENV's hosts (default local); SIZES=4,8,16,32 adds those sizes side by side
	@$(BIN)/python scripts/plan.py --inventory $(INVENTORY) $(if $(SIZES),--sizes "$(SIZES)") -- $(ANSIBLE_ARGS)

# The memory budget's capacity table (group_vars/all/budget.yml, filter_plugins/memory_budget.py).

##@ Plan (ENV=...)

.PHONY: plan
plan: setup ## Print the memory plan of ENV's hosts (default local), touching no host: make plan ENV=production
	ansible-playbook -i $(INVENTORY) playbooks/plan.yml $(ANSIBLE_ARGS)

# make bench-postgres: pgbench against the memory budget's PostgreSQL settings and against the
# distribution's stock settings, under the same memory ceiling, on a throwaway Debian 13 host.
# Not part of `make test` (it measures, it does not check); about 5 minutes on an idle machine.
PGBENCH_SECONDS ?= 30
PGBENCH_SCALE   ?= 30
PGBENCH_CLIENTS ?= 8

##@ Benchmarks

.PHONY: bench-postgres
bench-postgres: setup images apt-cache ## pgbench: budget-derived vs stock PostgreSQL settings under one memory ceiling (PGBENCH_*)
	@PGBENCH_SECONDS=$(PGBENCH_SECONDS) PGBENCH_SCALE=$(PGBENCH_SCALE) PGBENCH_CLIENTS=$(PGBENCH_CLIENTS) \
	  scripts/bench-postgres.sh

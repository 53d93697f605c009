# make bench-postgres: PostgreSQL with the memory budget's settings against the distribution's stock
# settings, under the same memory ceiling, on one throwaway Debian 13 host (scripts/bench-postgres.sh,
# scripts/bench_postgres.py): pgbench's select-only and tpcb-like, and the app's own list, search and
# dashboard queries and a visit of all three (compiled from app/ with its venv) over PGBENCH_INVOICES
# receipts of PGBENCH_USERS users. PGBENCH_ROUNDS runs of each variant, alternated S D D S S D, the
# data re-created before each. Not part of `make test` (it measures, it does not check); about 20
# minutes.
PGBENCH_ROUNDS   ?= 3
PGBENCH_SECONDS  ?= 20
PGBENCH_WARMUP   ?= 5
PGBENCH_SCALE    ?= 30
PGBENCH_CLIENTS  ?= 8
PGBENCH_INVOICES ?= 100000
PGBENCH_USERS    ?= 1000

##@ Benchmarks

.PHONY: bench-postgres
bench-postgres: setup images apt-cache $(APP_VENV)/.installed ## PostgreSQL: budget-derived vs stock settings, pgbench and the app's own queries (PGBENCH_*)
	@PGBENCH_ROUNDS=$(PGBENCH_ROUNDS) PGBENCH_SECONDS=$(PGBENCH_SECONDS) PGBENCH_WARMUP=$(PGBENCH_WARMUP) \
	  PGBENCH_SCALE=$(PGBENCH_SCALE) PGBENCH_CLIENTS=$(PGBENCH_CLIENTS) \
	  PGBENCH_INVOICES=$(PGBENCH_INVOICES) PGBENCH_USERS=$(PGBENCH_USERS) scripts/bench-postgres.sh

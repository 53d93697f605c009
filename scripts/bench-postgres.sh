#!/usr/bin/env bash
# make bench-postgres: PostgreSQL 17 with the memory budget's settings against the distribution's
# stock settings, both under the budget's memory ceiling, on one throwaway Debian 13 systemd host (a
# container like Molecule's test hosts), removed at the end. pgbench's select-only and tpcb-like
# modes and the app's own queries (its list, search and dashboard, and a visit of all three) over
# PGBENCH_INVOICES receipts, each variant PGBENCH_ROUNDS times, alternated, the data re-created
# before every run: the design is in scripts/bench_postgres.py, which this starts. Arguments go to
# it (--variants, --modes, --rounds, ...: scripts/bench_postgres.py --help).
#
# Needs the app's venv (make app-setup): the app's queries are compiled from its own code.
set -euo pipefail
cd "$(dirname "$0")/.."

name=toolkit-bench-postgres
image=toolkit/systemd-debian:trixie
work=$(mktemp -d)

THROWAWAY_CLEANUP="rm -rf '$work'"
# shellcheck source=scripts/throwaway-host.sh
. scripts/throwaway-host.sh
throwaway_host "$name" "$image"

# An inventory that sees the real group_vars/all (the memory budget) like every other.
mkdir -p "$work/group_vars"
ln -s "$PWD/group_vars/all" "$work/group_vars/all"
cat > "$work/hosts.yml" <<HOSTS
bench:
  hosts:
    $name:
      ansible_connection: community.docker.docker
      # Throwaway values for a host that lives for the benchmark only.
      postgres_app_password: bench-only-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
HOSTS

PATH="$PWD/.venv/bin:$PATH" .venv/bin/python scripts/bench_postgres.py \
  --host "$name" --inventory "$work/hosts.yml" --work "$work" "$@"

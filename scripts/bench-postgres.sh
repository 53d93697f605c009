#!/usr/bin/env bash
# pgbench (select-only and tpcb-like) against PostgreSQL with the memory budget's settings and
# with the distribution's stock settings, both under the budget's memory ceiling, on a throwaway
# Debian 13 systemd host (PostgreSQL 17) (a container like Molecule's test hosts). Prints both TPS figures and
# their ratio, then removes the host. Usage: scripts/bench-postgres.sh (make bench-postgres).
#
# The data set (pgbench scale PGBENCH_SCALE, about 15 MB per unit) is at least twice the stock
# shared_buffers (128 MB): the stock server cannot hold it in its own cache.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${PGBENCH_SECONDS:-30}
scale=${PGBENCH_SCALE:-30}
clients=${PGBENCH_CLIENTS:-8}
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

psql() { docker exec -u postgres "$name" psql -XAtq -c "$1"; }

# One configuration: apply the role, fresh data, a restart (cold caches), then the two runs.
run_config() {
  local label=$1 stock=$2 mode tps
  echo "bench-postgres: applying the $label settings" >&2
  ansible-playbook -i "$work/hosts.yml" scripts/bench-postgres.yml -e "bench_stock=$stock" >"$work/$label.log" \
    || { tail -40 "$work/$label.log" >&2; exit 1; }
  echo "bench-postgres: $label: shared_buffers $(psql 'SHOW shared_buffers'), work_mem $(psql 'SHOW work_mem')," \
    "effective_cache_size $(psql 'SHOW effective_cache_size'), MemoryMax" \
    "$(docker exec "$name" systemctl show -p MemoryMax --value postgresql@17-main)" >&2
  docker exec -u postgres "$name" dropdb --if-exists bench 2>/dev/null
  docker exec -u postgres "$name" createdb bench
  docker exec -u postgres "$name" pgbench -q -i -s "$scale" bench >/dev/null 2>&1
  psql "CHECKPOINT" >/dev/null
  docker exec "$name" systemctl restart postgresql@17-main
  # Unmeasured warm-up, the same for both: the figures are steady state, not cache filling.
  docker exec -u postgres "$name" pgbench -b select-only -c "$clients" -j 2 -T 5 bench >/dev/null 2>&1
  for mode in select-only tpcb-like; do
    tps=$(docker exec -u postgres "$name" pgbench -b "$mode" -c "$clients" -j 2 -T "$seconds" bench 2>/dev/null \
      | awk '/^tps = / {print $3; exit}')
    echo "bench-postgres: $label $mode: $tps tps" >&2
    echo "$label $mode $tps" >>"$work/results"
  done
  psql "SELECT pg_size_pretty(pg_database_size('bench'))" >"$work/size"
}

run_config stock true
run_config derived false

tps() { awk -v l="$1" -v m="$2" '$1 == l && $2 == m {print $3}' "$work/results"; }
echo
echo "pgbench on Debian 13 / PostgreSQL 17: scale $scale ($(cat "$work/size") of data), $clients clients," \
  "$seconds s per run, both under the budget's MemoryMax"
printf '%-12s %12s %12s %8s\n' mode "stock tps" "derived tps" ratio
for mode in select-only tpcb-like; do
  stock=$(tps stock "$mode")
  derived=$(tps derived "$mode")
  printf '%-12s %12.1f %12.1f %8.2f\n' "$mode" "$stock" "$derived" "$(awk -v d="$derived" -v s="$stock" 'BEGIN {print d / s}')"
done

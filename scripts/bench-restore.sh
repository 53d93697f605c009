#!/usr/bin/env bash
# The RTO of a point-in-time restore from each pgBackRest repository: a generated database of about
# RESTORE_BENCH_MB (pgbench's tables) on a throwaway Debian 13 host (PostgreSQL 17) with the backup
# role; a full backup into the local (repo1) and the encrypted offsite repository (repo2, a
# directory here); then RESTORE_BENCH_ROUNDS rounds, each restoring `toolkit-pitr restore --latest`
# from both repositories, the order alternating between rounds. Prints each restore and the median
# and range per repository. Usage: scripts/bench-restore.sh (make bench-restore).
set -euo pipefail
cd "$(dirname "$0")/.."

megabytes=${RESTORE_BENCH_MB:-1024}
rounds=${RESTORE_BENCH_ROUNDS:-3}
name=toolkit-bench-restore
image=toolkit/systemd-debian:trixie
work=$(mktemp -d)

THROWAWAY_CLEANUP="rm -rf '$work'"
# shellcheck source=scripts/throwaway-host.sh
. scripts/throwaway-host.sh
throwaway_host "$name" "$image" -v /var/lib/postgresql -v /var/lib/pgbackrest -v /srv/offsite

mkdir -p "$work/group_vars"
ln -s "$PWD/group_vars/all" "$work/group_vars/all"
secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
cat > "$work/hosts.yml" <<HOSTS
bench:
  hosts:
    $name:
      ansible_connection: community.docker.docker
      # Throwaway values for a host that lives for the benchmark only.
      postgres_app_password: bench-only-$(secret)
      backup_pitr_cipher_pass: bench-only-$(secret)
HOSTS

echo "bench-restore: applying PostgreSQL and the backup role" >&2
ansible-playbook -i "$work/hosts.yml" scripts/bench-restore.yml >"$work/apply.log" \
  || { tail -40 "$work/apply.log" >&2; exit 1; }
on_host() { docker exec "$name" "$@"; }
# pgbench's scale 1 is about 15 MB on disk.
scale=$(( (megabytes + 14) / 15 ))
echo "bench-restore: generating pgbench scale $scale in database bench" >&2
on_host runuser -u postgres -- createdb bench
on_host runuser -u postgres -- pgbench -q -i -s "$scale" bench >/dev/null 2>&1
size=$(on_host runuser -u postgres -- psql -XAtq -c "SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database")
echo "bench-restore: cluster size $size; a full backup into each repository" >&2
on_host toolkit-pitr backup full >&2

for round in $(seq "$rounds"); do
  order="1 2"
  (( round % 2 == 0 )) && order="2 1"
  for repo in $order; do
    start=$(date +%s.%N)
    on_host toolkit-pitr restore --latest --repo "$repo" --yes >"$work/restore.log" \
      || { cat "$work/restore.log" >&2; exit 1; }
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')
    echo "bench-restore: round $round repo$repo: $seconds s ($(grep -o 'restored the latest moment in [0-9.]* s (recovery [0-9.]* s)' "$work/restore.log"))" >&2
    echo "$repo $seconds" >>"$work/results"
    on_host toolkit-pitr restore --drop-previous >/dev/null
  done
done

echo
echo "toolkit-pitr restore --latest on Debian 13 / PostgreSQL 17 / pgBackRest $(on_host pgbackrest version | awk '{print $2}'):" \
  "cluster of $size, $rounds rounds alternating, wall-clock seconds (app stop/start and promotion included)"
printf '%-28s %8s %8s %8s\n' repository median min max
for repo in 1 2; do
  label=$([ "$repo" = 1 ] && echo "repo1 (local)" || echo "repo2 (offsite, encrypted)")
  awk -v r="$repo" '$1 == r {print $2}' "$work/results" | sort -n | awk -v label="$label" '
    {v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
    printf "%-28s %8.1f %8.1f %8.1f\n", label, m, v[1], v[NR]}'
done

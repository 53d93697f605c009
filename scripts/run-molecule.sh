#!/usr/bin/env bash
# Run Molecule scenarios, MOLECULE_JOBS at a time (default 2), each `molecule test` writing its own
# log under .local/molecule/. Prints one line per scenario as it ends, the log of every scenario
# that failed, and a closing line with the testinfra totals. Exit status: 0 only when every
# scenario passed.
#
# usage: scripts/run-molecule.sh [scenario ...]     (default: every molecule/*/molecule.yml)
set -uo pipefail

jobs=${MOLECULE_JOBS:-2}
# Molecule wraps what it prints at the terminal's width, 80 columns without a terminal: a test id or
# an Ansible message would be cut over several lines of the logs (and of the digest below).
export COLUMNS=200
logs=${MOLECULE_LOGS:-.local/molecule}
mkdir -p "$logs"

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  # Slowest first, so the last ones to start are short and the two lanes end together; split after
  # backup, so production has built the image tarball both deploy by the time it starts.
  first=(production backup split data ssh_hardening)
  for name in "${first[@]}"; do
    [ -f "molecule/$name/molecule.yml" ] && scenarios+=("$name")
  done
  for file in molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$file")")
    [[ " ${scenarios[*]} " == *" $name "* ]] || scenarios+=("$name")
  done
fi

run_one() {
  local name=$1 logs=$2 start rc
  start=$(date +%s)
  # The production and split scenarios deploy the packaged image: they build it first, beside the
  # other lane (`make package` is a no-op when the tarball of that very image exists; production
  # starts first, and split only after it has built).
  if [ "$name" = production ] || [ "$name" = split ]; then
    make --no-print-directory package >"$logs/$name.log" 2>&1
  else
    : >"$logs/$name.log"
  fi && molecule test -s "$name" >>"$logs/$name.log" 2>&1
  rc=$?
  printf '%s %s %s\n' "$name" "$rc" "$(($(date +%s) - start))" >"$logs/$name.status"
  printf 'molecule %-16s %s in %4d s\n' "$name" "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" \
    "$(($(date +%s) - start))"
}
export -f run_one

rm -f "$logs"/*.status
echo "molecule: ${#scenarios[@]} scenarios, $jobs at a time (logs in $logs/)"
printf '%s\n' "${scenarios[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one "$1" "$2"' _ {} "$logs"

passed=0 failed=0 skipped=0 broken=()
for name in "${scenarios[@]}"; do
  status_file="$logs/$name.status"
  rc=1
  [ -f "$status_file" ] && rc=$(cut -d' ' -f2 "$status_file")
  # testinfra's closing line, e.g. "==== 25 passed, 1 skipped in 54.31s ====" (colours stripped).
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$logs/$name.log" 2>/dev/null | grep -E '=+ .*(passed|failed|error).* in [0-9.]+s' | tail -n 1)
  for kind in passed failed skipped; do
    count=$(grep -oE "[0-9]+ $kind" <<<"$summary" | cut -d' ' -f1)
    count=${count:-0}
    case $kind in
      passed) passed=$((passed + count)) ;;
      failed) failed=$((failed + count)) ;;
      skipped) skipped=$((skipped + count)) ;;
    esac
  done
  if [ "$rc" -ne 0 ]; then
    broken+=("$name")
    echo "---------------- molecule $name FAILED: last 150 lines of $logs/$name.log ----------------"
    sed 's/\x1b\[[0-9;]*m//g' "$logs/$name.log" | tail -n 150
  fi
done

# A scenario that failed before its tests ran still counts as one failure.
[ ${#broken[@]} -gt 0 ] && [ "$failed" -eq 0 ] && failed=${#broken[@]}
# Why each failed, in a few lines (scripts/molecule_digest.py), last: the end of the output is
# what a CI report keeps.
for name in "${broken[@]}"; do
  python3 scripts/molecule_digest.py "$logs/$name.log" | sed "s/^/molecule $name: /"
done
echo "molecule: $passed passed, $failed failed, $skipped skipped"
if [ ${#broken[@]} -gt 0 ]; then
  echo "molecule: failed scenarios: ${broken[*]}"
  exit 1
fi

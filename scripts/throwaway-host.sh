# Sourced by the benchmarks (scripts/bench-*.sh): a throwaway Debian systemd host in a container,
# with the options of .config/molecule/config.yml (systemd boots without --privileged), packages
# through the controller's apt cache (make apt-cache) when it answers, removed on exit.
#
#   throwaway_host NAME IMAGE [docker run options...]   start it and wait for systemd

throwaway_host() {
  local name=$1 image=$2 state gateway
  shift 2
  command -v docker >/dev/null || { echo "$name: needs docker (make engine)" >&2; exit 1; }
  docker image inspect "$image" >/dev/null 2>&1 || { echo "$name: needs $image (make images)" >&2; exit 1; }
  echo "$name: starting the throwaway host" >&2
  docker rm -f -v "$name" >/dev/null 2>&1 || true
  trap "docker rm -f -v '$name' >/dev/null 2>&1 || true; ${THROWAWAY_CLEANUP:-:}" EXIT
  docker run -d --name "$name" --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined --cgroupns=host \
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock "$@" \
    "$image" /lib/systemd/systemd >/dev/null
  for _ in $(seq 60); do
    state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
    [[ $state == running || $state == degraded ]] && break
    sleep 1
  done
  gateway=$(docker exec "$name" ip -4 route show default | awk '{print $3}')
  if timeout 2 bash -c "</dev/tcp/$gateway/3142" 2>/dev/null; then
    docker exec "$name" sh -c "echo 'Acquire::http::Proxy \"http://$gateway:3142\";' > /etc/apt/apt.conf.d/00bench-proxy"
  fi
}

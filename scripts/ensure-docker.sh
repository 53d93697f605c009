#!/usr/bin/env bash
# Make sure a Docker engine answers for the test harness.
#   - an engine that already answers is used as it is;
#   - on Debian as root with none running, install Debian's docker.io and start dockerd;
#   - anywhere else, stop with one line saying what is missing and how to get it.
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}

engine_answers() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

if engine_answers; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! grep -qs '^ID=debian' /etc/os-release; then
  echo "ensure-docker: no Docker engine answers; start one (https://docs.docker.com/engine/install/) or run as root on Debian so the project can install docker.io" >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
fi

if [ -d /run/systemd/system ]; then
  systemctl start docker
else
  echo "ensure-docker: starting dockerd (log: $log)"
  # setsid: the daemon outlives this script and the make process that called it.
  setsid dockerd >"$log" 2>&1 < /dev/null &
fi

for _ in $(seq 1 60); do
  if engine_answers; then
    echo "ensure-docker: engine $(docker version --format '{{.Server.Version}}') answers"
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; see $log" >&2
exit 1

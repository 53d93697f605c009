#!/usr/bin/env bash
# The image's entrypoint: one image, three commands.
#   api                     the HTTP API (default): uvicorn with $UVICORN_WORKERS processes on $PORT
#   worker [options]        the job worker (python -m invoice_service.worker)
#   migrate [alembic args]  database migrations (invoice-migrate; default: upgrade head)
#   help                    this text
# Anything else is run as a command (`docker run ... invoice-service:<v> bash`).
# Each command replaces this script (exec), so tini hands SIGTERM straight to it.
set -euo pipefail

usage() { sed -n '2,7s/^# \{0,1\}//p' "$0"; }

command=${1:-api}
[ $# -eq 0 ] || shift
case "$command" in
  api)
    # invoice_service.serve.main (the `invoice-api` console script) runs uvicorn from the
    # service's settings, as
    #   uvicorn --factory invoice_service.main:create_app --host $HOST --port $PORT
    #     --workers $UVICORN_WORKERS --timeout-graceful-shutdown $GRACEFUL_SHUTDOWN_SECONDS
    # plus JSON logs from the first line and an empty PROMETHEUS_MULTIPROC_DIR shared by the
    # workers. X-Forwarded-For is believed only from TRUSTED_PROXY_NETWORKS, decided in one place
    # (the app), so uvicorn's own proxy-header handling is off.
    # Called with -c, not through the console script: uvicorn starts its workers with "spawn",
    # which re-imports the __main__ file in every worker; the console script imports the whole
    # service there, and on a busy host that made workers miss uvicorn's 5 s start-up ping and be
    # killed in a loop. With -c there is no file to re-import.
    exec python -c 'from invoice_service.serve import main; main()' "$@"
    ;;
  worker)
    exec python -m invoice_service.worker "$@"
    ;;
  migrate)
    [ $# -gt 0 ] || set -- upgrade head
    exec invoice-migrate "$@"
    ;;
  help | --help | -h)
    usage
    ;;
  *)
    exec "$command" "$@"
    ;;
esac

#!/usr/bin/env bash
# `make demo` / `make up` / `make down`: the whole platform on this machine (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
raas=(.venv/bin/python -m gym_raas_mqtt.cli)
case "${1:-}" in
  --keep-running) exec "${raas[@]}" stack up --dir var/stack ;;
  --stop)         "${raas[@]}" stack down --dir var/stack; scripts/dockerd.sh stop ;;
  *)
    status=0
    "${raas[@]}" stack demo --dir var/demo || status=$?
    scripts/dockerd.sh stop   # nothing left running: also the Docker engine, if we started it
    exit $status ;;
esac

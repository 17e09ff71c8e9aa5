#!/usr/bin/env bash
# The four Pushline services as background processes, for `make run` / `make stop`.
#
#   services.sh start   start every service (and the provider emulators, for sandbox apps)
#                       that is not running, wait until each answers, set up the demo
#                       sandbox app and print how to try it
#   services.sh stop    SIGTERM them, then SIGKILL what is left after 30 s
#   services.sh status  say what runs
#
# Every PUSHLINE_* variable in the caller's environment reaches every service unchanged.
# The emulators start first: once they listen they write where they are, the
# PUSHLINE_SANDBOX_* settings, to $state/emulators/sandbox.env, which the services then get.
# For development only, a master key and an admin API token are generated once into the
# state directory (master.key, admin.token) when PUSHLINE_MASTER_KEY or PUSHLINE_ADMIN_TOKEN
# is not set, so that the README's examples work after a plain `make run`. The ingest serves
# the admin API on a listener of its own, PUSHLINE_ADMIN_PORT (default 8081) on
# PUSHLINE_ADMIN_HOST (default 127.0.0.1). The workers' metrics ports default to 9101-9103;
# RESOLVER_PORT, SENDER_PORT and FEEDBACK_PORT move them (PUSHLINE_METRICS_PORT would give
# all three the same one).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${PUSHLINE_STATE_DIR:-$HOME/.local/state/pushline}
python=${PUSHLINE_PYTHON:-$root/.venv/bin/python}
services=(emulators ingest resolver sender feedback)
# Written by the emulators once they listen, removed when they stop.
sandbox_env=$state/emulators/sandbox.env
# Where each service answers when ready: the ingest on its HTTP port, workers on their
# metrics ports.
declare -A ports=(
  [ingest]=${PUSHLINE_INGEST_PORT:-8080}
  [resolver]=${RESOLVER_PORT:-9101}
  [sender]=${SENDER_PORT:-9102}
  [feedback]=${FEEDBACK_PORT:-9103}
)
admin_port=${PUSHLINE_ADMIN_PORT:-8081}

log() { printf 'services: %s\n' "$*" >&2; }
alive() { [[ -f $state/run/$1.pid ]] && kill -0 "$(cat "$state/run/$1.pid")" 2>/dev/null; }

# dev_secret VARIABLE FILE WHAT: export VARIABLE from $state/FILE, generated there once
# (32 random bytes, base64url, readable by the owner only), unless the caller set it.
dev_secret() {
  local variable=$1 file=$state/$2
  [[ -n ${!variable:-} ]] && return
  if [[ ! -s $file ]]; then
    (umask 077 && head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$file")
    log "generated a development $3 in $file"
  fi
  export "$variable=$(cat "$file")"
}

# launch NAME: start `pushline NAME` in the background unless it runs.
launch() {
  local name=$1
  if alive "$name"; then
    log "$name already runs (pid $(cat "$state/run/$name.pid"))"
    return
  fi
  # A file left by emulators killed outright would name stopped ones.
  [[ $name == emulators ]] && rm -f "$sandbox_env"
  # Each worker its own metrics port; the emulators have none.
  (
    [[ -n ${ports[$name]:-} ]] && export PUSHLINE_METRICS_PORT=${ports[$name]}
    exec nohup "$python" -m services.cli "$name" >>"$state/logs/$name.log" 2>&1
  ) &
  echo $! >"$state/run/$name.pid"
  log "started $name (pid $!, log $state/logs/$name.log)"
}

# ready NAME: whether it answers (the emulators: whether they wrote where they are; the
# ingest: on its admin listener too).
ready() {
  if [[ $1 == emulators ]]; then
    [[ -s $sandbox_env ]]
  elif [[ $1 == ingest ]]; then
    curl -fsS -o /dev/null "http://127.0.0.1:${ports[ingest]}/readyz" 2>/dev/null &&
      curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/healthz" 2>/dev/null
  else
    curl -fsS -o /dev/null "http://127.0.0.1:${ports[$1]}/readyz" 2>/dev/null
  fi
}

# await_ready NAME: wait up to 90 s for it; exit with its log's tail if it exits or never
# answers.
await_ready() {
  local name=$1 i
  for i in $(seq 1 180); do
    ready "$name" && return
    if ! alive "$name"; then
      tail -n 30 "$state/logs/$name.log" >&2
      log "$name exited; see $state/logs/$name.log"
      exit 1
    fi
    sleep 0.5
  done
  ready "$name" || { log "$name not ready"; exit 1; }
}

start() {
  mkdir -p "$state/run" "$state/logs"
  dev_secret PUSHLINE_MASTER_KEY master.key "master key"
  dev_secret PUSHLINE_ADMIN_TOKEN admin.token "admin API token"
  launch emulators
  await_ready emulators
  # Where sandbox apps deliver, for every service started from here on.
  set -a
  # shellcheck source=/dev/null
  . "$sandbox_env"
  set +a
  local name
  for name in "${services[@]:1}"; do
    launch "$name"
  done
  for name in "${services[@]:1}"; do
    await_ready "$name"
  done
  local host=${PUSHLINE_INGEST_HOST:-127.0.0.1}
  echo "Pushline is running. Ingest: http://$host:${ports[ingest]} (OpenAPI docs at /docs)"
  echo "Admin API: http://${PUSHLINE_ADMIN_HOST:-127.0.0.1}:$admin_port (docs at /docs; token: \$PUSHLINE_ADMIN_TOKEN or $state/admin.token)"
  echo "Logs: $state/logs/   Stop: make stop"
  "$python" -m services.cli sandbox setup
}

stop() {
  local name pid i
  for name in "${services[@]}"; do
    if alive "$name"; then
      pid=$(cat "$state/run/$name.pid")
      log "stopping $name ($pid)"
      kill "$pid"
    fi
  done
  for name in "${services[@]}"; do
    if alive "$name"; then
      pid=$(cat "$state/run/$name.pid")
      for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$state/run/$name.pid"
  done
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status)
    for name in "${services[@]}"; do
      if alive "$name"; then echo "$name: running (pid $(cat "$state/run/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

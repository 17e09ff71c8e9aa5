#!/usr/bin/env bash
# The local infrastructure as plain processes (no Docker engine on these machines):
# Apache Kafka (KRaft, one combined node) on 127.0.0.1:9092 and the MongoDB-protocol
# store on 127.0.0.1:27017. PUSHLINE_KAFKA_PORT, PUSHLINE_KAFKA_CONTROLLER_PORT (9093) and
# PUSHLINE_STORE_PORT, with a state dir of its own, run a second, separate stack (the
# fault tests kill and restart theirs without touching the shared one).
#
#   stack.sh up      fetch what is missing, start what is not running, wait until both answer
#                    (skips a component whose PUSHLINE_* variable points elsewhere)
#   stack.sh down    stop what `up` started
#   stack.sh status  say what runs
#
# Jars are cached in PUSHLINE_CACHE_DIR (default ~/.cache/pushline), data, logs and pid
# files live in PUSHLINE_STATE_DIR (default ~/.local/state/pushline). Both are outside the
# repository, so a fresh clone reuses them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PUSHLINE_CACHE_DIR:-$HOME/.cache/pushline}
state=${PUSHLINE_STATE_DIR:-$HOME/.local/state/pushline}
kafka_heap=${PUSHLINE_KAFKA_HEAP:-1g}
# mongo-java-server holds a query's whole result in its heap until the cursor is read out
# (InMemoryCursor): a to.all over 1,000,000 devices ran a 1 GB store out of memory.
store_heap=${PUSHLINE_STORE_HEAP:-4g}
# Unset: H2's defaults (16 MB, 1 s, 45 s); see StoreServer.java.
store_cache_mb=${PUSHLINE_STORE_CACHE_MB:-}
store_commit_ms=${PUSHLINE_STORE_COMMIT_MS:-}
store_retention_ms=${PUSHLINE_STORE_RETENTION_MS:-}
kafka_port=${PUSHLINE_KAFKA_PORT:-9092}
controller_port=${PUSHLINE_KAFKA_CONTROLLER_PORT:-9093}
store_port=${PUSHLINE_STORE_PORT:-27017}

log() { printf 'stack: %s\n' "$*" >&2; }

# fetch_jars NAME POM: copy the POM's runtime dependencies into $cache/NAME, once per
# POM content (a changed POM refetches).
fetch_jars() {
  local name=$1 pom=$2 dir=$cache/$1
  local stamp
  stamp=$(sha256sum "$pom" | cut -c1-16)
  if [[ -f $dir/.stamp && $(cat "$dir/.stamp") == "$stamp" ]]; then
    return
  fi
  log "fetching $name jars from Maven Central into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  mvn -q -B -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir/libs" >"$dir/mvn.log" 2>&1 \
    || { cat "$dir/mvn.log" >&2; log "could not fetch $name jars"; exit 1; }
  echo "$stamp" >"$dir/.stamp"
}

# shellcheck source=deploy/local/pidfile.sh
source "$here/pidfile.sh"

# alive NAME: the pid file of NAME names a live process.
alive() { pid_alive "$state/$1.pid"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kafka_ready() {
  java -cp "$cache/kafka/libs/*" "$here/KafkaReady.java" "127.0.0.1:$kafka_port" "$1"
}

kafka_up() {
  fetch_jars kafka "$here/kafka-pom.xml"
  if kafka_ready 2; then
    log "kafka already answers on 127.0.0.1:$kafka_port"
    return
  fi
  if alive kafka; then
    log "kafka process runs but does not answer yet; waiting"
  else
    local dir=$state/kafka
    mkdir -p "$dir"
    sed -e "s|@STATE@|$state|g" -e "s|@PORT@|$kafka_port|g" \
      -e "s|@CONTROLLER_PORT@|$controller_port|g" "$here/kafka.properties" >"$dir/server.properties"
    local java=(java "-Xms$kafka_heap" "-Xmx$kafka_heap" -XX:+UseG1GC
      -Dlog4j2.configurationFile="$here/log4j2.properties"
      -cp "$cache/kafka/libs/*")
    if [[ ! -f $dir/data/meta.properties ]]; then
      log "formatting KRaft storage in $dir/data"
      "${java[@]}" kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id "$("${java[@]}" kafka.tools.StorageTool random-uuid)" \
        --config "$dir/server.properties" >"$dir/format.log" 2>&1 \
        || { cat "$dir/format.log" >&2; exit 1; }
    fi
    log "starting kafka"
    nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
    echo $! >"$state/kafka.pid"
  fi
  if ! kafka_ready 90; then
    tail -n 40 "$state/kafka/kafka.log" >&2 || true
    log "kafka did not answer an admin call within 90 s"
    exit 1
  fi
  log "kafka answers on 127.0.0.1:$kafka_port"
}

store_up() {
  fetch_jars store "$here/store-pom.xml"
  if port_open "$store_port"; then
    log "store already answers on 127.0.0.1:$store_port"
    return
  fi
  local dir=$state/store
  mkdir -p "$dir"
  if ! alive store; then
    log "starting store"
    nohup java "-Xmx$store_heap" ${store_cache_mb:+"-Dstore.cacheMb=$store_cache_mb"} \
      ${store_commit_ms:+"-Dstore.commitMs=$store_commit_ms"} \
      ${store_retention_ms:+"-Dstore.retentionMs=$store_retention_ms"} \
      -cp "$cache/store/libs/*" "$here/StoreServer.java" \
      127.0.0.1 "$store_port" "$dir/pushline.mv" >"$dir/store.log" 2>&1 &
    echo $! >"$state/store.pid"
  fi
  local i
  for i in $(seq 1 120); do
    if grep -q 'store listening' "$dir/store.log" 2>/dev/null && port_open "$store_port"; then
      log "store answers on 127.0.0.1:$store_port"
      return
    fi
    alive store || break
    sleep 0.5
  done
  tail -n 40 "$dir/store.log" >&2 || true
  log "store did not start"
  exit 1
}

# stop NAME: SIGTERM, then SIGKILL after 30 s.
stop() {
  alive "$1" && log "stopping $1 ($(cat "$state/$1.pid"))"
  pid_stop "$state/$1.pid"
}

mkdir -p "$state"
case ${1:-} in
  up)
    # A component configured elsewhere (PUSHLINE_KAFKA_BOOTSTRAP / PUSHLINE_MONGODB_URI set
    # to something other than the local default) is not started here.
    pids=()
    if [[ ${PUSHLINE_KAFKA_BOOTSTRAP:-127.0.0.1:$kafka_port} == "127.0.0.1:$kafka_port" ]]; then
      kafka_up &
      pids+=($!)
    else
      log "kafka: using PUSHLINE_KAFKA_BOOTSTRAP=$PUSHLINE_KAFKA_BOOTSTRAP"
    fi
    if [[ ${PUSHLINE_MONGODB_URI:-mongodb://127.0.0.1:$store_port/} == "mongodb://127.0.0.1:$store_port/"* ]]; then
      store_up &
      pids+=($!)
    else
      log "store: using PUSHLINE_MONGODB_URI"
    fi
    # Both start in parallel; each waits for its own readiness.
    for pid in "${pids[@]}"; do
      wait "$pid"
    done
    ;;
  down)
    stop store
    stop kafka
    ;;
  status)
    for name in kafka store; do
      if alive "$name"; then echo "$name: running (pid $(cat "$state/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac

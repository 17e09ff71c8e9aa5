# Background processes tracked by pid files; sourced by the local stack scripts.

# pid_alive FILE: the pid file names a live process.
pid_alive() {
  [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# pid_stop FILE: SIGTERM the process, SIGKILL it after 30 s, forget the pid file.
pid_stop() {
  local file=$1 pid i
  if pid_alive "$file"; then
    pid=$(cat "$file")
    kill "$pid"
    for i in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# shellcheck shell=bash
# Step lines for the scripts, sourced by them: one clock and one format everywhere.
#   [ 1:23] images: mlops-target:trixie ready (41 s)
# The clock is the time since the first script of a run started (MLFLOW_STEP_CLOCK, an epoch
# second the first one exports), so the lines of demo.sh, setup.sh, engine.sh and images.sh
# read as one timeline.
#   step MESSAGE...                 print one step line
#   watch LABEL LOG CMD...          run CMD with its output in LOG; while it runs print
#                                   "LABEL (N s): <what the log says last>" every
#                                   MLFLOW_STEP_EVERY seconds (15), so no step is silent for
#                                   long; on failure print the log's tail. Returns CMD's status
#                                   and leaves its duration in WATCHED (seconds).
# WATCH_NOTE=FUNCTION watch ... names a function that reads the log (its one argument) and
# says in a few words how far the step is; by default the log's last line.
#   stop_tree PID                   end PID and every process under it
# A script's background jobs ignore Ctrl-C, so watch stops its command itself on INT or TERM.

: "${MLFLOW_STEP_CLOCK:=$(date +%s)}"
export MLFLOW_STEP_CLOCK

step() {
  local s=$(($(date +%s) - MLFLOW_STEP_CLOCK))
  printf '[%2d:%02d] %s\n' $((s / 60)) $((s % 60)) "$*"
}

# The last non-empty line of a log, without carriage returns, cut to fit one screen line.
last_line() {
  tr '\r' '\n' <"$1" 2>/dev/null | awk 'NF {line = $0} END {print line}' | cut -c1-70
}

stop_tree() {
  local pids=("$1") i=0 child
  while [ "$i" -lt ${#pids[@]} ]; do
    for child in $(ps -o pid= --ppid "${pids[$i]}" 2>/dev/null); do pids+=("$child"); done
    i=$((i + 1))
  done
  kill "${pids[@]}" 2>/dev/null || true
}

watch() {
  local label=$1 log=$2 started pid rc=0 every=${MLFLOW_STEP_EVERY:-15} note waited traps
  local note_fn=${WATCH_NOTE:-last_line}
  shift 2
  started=$(date +%s)
  "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  traps=$(trap -p INT TERM)
  trap 'stop_tree "$pid"; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    waited=0
    while [ "$waited" -lt "$every" ] && kill -0 "$pid" 2>/dev/null; do
      sleep 1
      waited=$((waited + 1))
    done
    kill -0 "$pid" 2>/dev/null || break
    note=$("$note_fn" "$log")
    step "$label ($(($(date +%s) - started)) s)${note:+: $note}"
  done
  wait "$pid" || rc=$?
  trap - INT TERM
  eval "$traps"
  WATCHED=$(($(date +%s) - started))
  if [ "$rc" -ne 0 ]; then
    tail -30 "$log" >&2
    step "$label: FAILED after $WATCHED s (rc $rc); full log: $log" >&2
  fi
  return "$rc"
}

#!/usr/bin/env bash
# Prepare this machine for the tests and the demo; safe to run again:
# a Docker engine with Compose v2, the Python venv (.venv), the images, and the
# link that lets playbooks run from this clone find mlops.mlflow.*.
#   scripts/setup.sh                  everything scripts/test.sh needs
#   scripts/setup.sh --only demo      only the images the demo needs; any arguments go to
#                                     scripts/images.sh (its header lists the names)
# The venv is installed in the background while the images build: the two are independent.
# MLFLOW_SETUP_IMAGES=0 skips the images (scripts/test.sh builds them beside its checks).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/progress.sh
. scripts/progress.sh
mkdir -p .cache/logs

bash scripts/engine.sh

# What pip is at: packages collected so far, then the unpacking into .venv.
pip_note() {
  local installing
  installing=$(grep -a '^Installing collected packages:' "$1" | tail -1)
  if [ -n "$installing" ]; then
    echo "installing $(($(tr -cd , <<<"$installing" | wc -c) + 1)) packages, .venv at $(du -sm .venv | cut -f1) MB"
  else
    echo "$(grep -ac '^Collecting ' "$1") of $(grep -c '==' requirements-dev.lock) packages collected"
  fi
}
# One chain: a command that watch runs from an `||` list runs without errexit.
toolchain() {
  python3 -m venv .venv \
    && .venv/bin/pip install -q --upgrade pip \
    && .venv/bin/pip install --progress-bar off -r requirements-dev.txt -c requirements-dev.lock
}
install_toolchain() {
  WATCH_NOTE=pip_note watch "setup: Python toolchain" .cache/logs/toolchain.log toolchain || return 1
  echo "$stamp" >.venv/.stamp
  step "setup: Python toolchain ready ($WATCHED s)"
}

# The venv is rebuilt only when the requirement files change.
stamp=$(cat requirements-dev.txt requirements-dev.lock | sha256sum | cut -c1-16)
toolchain_pid=""
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]; then
  step "setup: installing the Python toolchain into .venv (log: .cache/logs/toolchain.log)"
  install_toolchain &
  toolchain_pid=$!
  # A background job ignores Ctrl-C: stop pip with the rest.
  trap 'stop_tree "$toolchain_pid"; exit 130' INT TERM
else
  step "setup: the Python toolchain in .venv is up to date"
fi

# Ansible looks for collections beside the playbook it runs, so the playbooks at the
# root and in playbooks/ find this checkout as mlops.mlflow through a collections/
# folder beside them (git-ignored links), before any copy installed elsewhere.
mkdir -p collections/ansible_collections/mlops playbooks/collections/ansible_collections/mlops
ln -sfn ../../.. collections/ansible_collections/mlops/mlflow
ln -sfn ../../../.. playbooks/collections/ansible_collections/mlops/mlflow

images_rc=0
# scripts/test.sh builds the images itself, beside the checks that do not need them.
[ "${MLFLOW_SETUP_IMAGES:-1}" = 0 ] || bash scripts/images.sh "$@" || images_rc=$?

if [ -n "$toolchain_pid" ]; then
  if kill -0 "$toolchain_pid" 2>/dev/null; then step "setup: waiting for the Python toolchain"; fi
  wait "$toolchain_pid" || exit 1
fi
[ "$images_rc" -eq 0 ]

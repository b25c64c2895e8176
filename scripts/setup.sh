#!/usr/bin/env bash
# Prepare this machine for the tests and the demo; safe to run again:
# a Docker engine with Compose v2, the Python venv (.venv), the images, and the
# link that lets playbooks run from this clone find mlops.mlflow.*.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p .cache

bash scripts/engine.sh

# ansible-test sanity runs shellcheck on the scripts.
if ! command -v shellcheck >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi

# The venv is rebuilt only when the requirement files change.
stamp=$(cat requirements-dev.txt requirements-dev.lock | sha256sum | cut -c1-16)
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing the Python toolchain into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt -c requirements-dev.lock
  echo "$stamp" > .venv/.stamp
fi

# Ansible looks for collections beside the playbook it runs, so the playbooks at the
# root and in playbooks/ find this checkout as mlops.mlflow through a collections/
# folder beside them (git-ignored links), before any copy installed elsewhere.
mkdir -p collections/ansible_collections/mlops playbooks/collections/ansible_collections/mlops
ln -sfn ../../.. collections/ansible_collections/mlops/mlflow
ln -sfn ../../../.. playbooks/collections/ansible_collections/mlops/mlflow

# scripts/test.sh builds the images itself, beside the checks that do not need them.
[ "${MLFLOW_SETUP_IMAGES:-1}" = 0 ] || bash scripts/images.sh "$@"

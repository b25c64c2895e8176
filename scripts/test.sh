#!/usr/bin/env bash
# The one test command: set up this machine (scripts/setup.sh), then run every
# check and end with a summary. Exits non-zero when any check fails.
#   scripts/test.sh                  everything
#   scripts/test.sh lint unit        only some stages: lint sanity unit docs functional molecule
#   MOLECULE_SCENARIOS="server" scripts/test.sh molecule
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(lint sanity unit docs functional molecule)

# The engine first; then the images (minutes on a fresh machine), which only Molecule
# needs, build in the background from the start: beside the venv's install, lint, sanity,
# units and the docs, and only when Molecule is asked for.
bash scripts/engine.sh || { echo "summary: setup failed (the Docker engine)"; exit 1; }
# ansible-test sanity runs shellcheck on the scripts; installed before the image build
# starts, whose debootstrap may need apt too.
if ! command -v shellcheck >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
logs="$root/.cache/logs"
mkdir -p "$logs"
images_started=$SECONDS images_pid=
if [[ " ${stages[*]} " == *" molecule "* ]]; then
  # Its own time, into a file: the wait below may come long after it ended.
  (
    bash scripts/images.sh >"$logs/images.log" 2>&1
    rc=$?
    echo $((SECONDS - images_started)) >"$logs/images.took"
    exit $rc
  ) &
  images_pid=$!
fi
if ! MLFLOW_SETUP_IMAGES=0 bash scripts/setup.sh; then
  [ -z "$images_pid" ] || { pkill -P "$images_pid"; kill "$images_pid"; } 2>/dev/null
  echo "summary: setup failed"
  exit 1
fi
export PATH="$root/.venv/bin:$PATH"
# promtool (Debian's prometheus package) checks the alert rules the server role ships, and the
# Molecule tests scrape a target's node_exporter with a real Prometheus: only the two binaries,
# unpacked into the venv, so no Prometheus service is installed or started here.
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  prometheus_deb=$(mktemp -d)
  if (cd "$prometheus_deb" && apt-get download -qq prometheus >/dev/null 2>&1) || {
    apt-get update -qq && (cd "$prometheus_deb" && apt-get download -qq prometheus >/dev/null)
  }; then
    for tool in promtool prometheus; do
      dpkg-deb --fsys-tarfile "$prometheus_deb"/prometheus_*.deb | tar -xO "./usr/bin/$tool" >".venv/bin/$tool"
      chmod 0755 ".venv/bin/$tool"
    done
  fi
  rm -rf "$prometheus_deb"
fi
declare -a results=()
# Disk: a run on a fresh machine takes about 19 GB at its peak (the venv, the images and their archives,
# the targets' own engines), and less space fails late and oddly (a target's image load or
# a database write, with "no space left on device" deep in a log). Say so first, and in the summary.
free_gb=$(df -Pk "$root" /var/lib/docker 2>/dev/null | awk 'NR > 1 {gb = int($4 / 1048576); if (min == "" || gb < min) min = gb} END {print min + 0}')
if [ "$free_gb" -lt 25 ]; then
  echo "WARNING: only $free_gb GB free on disk; a full run takes about 19 GB and may fail for want of space"
  results+=("WARN  disk: only $free_gb GB free at the start (a full run takes about 19 GB)")
fi
passed=0 failed=0 skipped=0

# budget NAME SECONDS: a Molecule scenario's or the functional tests' time against its budget
# (extensions/molecule/budgets).
budget() {
  [[ $1 == molecule-* || $1 == functional ]] || return 0
  awk -v s="${1#molecule-}" -v t="$2" '$1 == s {
    printf "[%.1f of %d min%s] ", t / 60, $2, (t > $2 * 60 ? ", OVER BUDGET" : "") }' extensions/molecule/budgets
}

# run NAME CMD...: run one check, keep its log, record the outcome.
run() {
  local name=$1 started=$SECONDS rc detail
  shift
  echo "=== $name"
  "$@" >"$logs/$name.log" 2>&1
  rc=$?
  # Test counts from pytest's closing lines ("12 passed, 1 skipped in 3.2s"), summed
  # over every pytest run the check made.
  detail=$(grep -aoE '[0-9]+ (passed|failed|skipped|errors?)\b' "$logs/$name.log" \
    | awk '{n[$2] += $1} END {for (k in n) printf "%d %s ", n[k], k}')
  detail+=$(budget "$name" $((SECONDS - started)))
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1)); results+=("PASS  $name ($((SECONDS - started))s) $detail")
  else
    failed=$((failed + 1)); results+=("FAIL  $name ($((SECONDS - started))s, rc=$rc) $detail  log: $logs/$name.log")
    # The failed tests by name, in the summary: CI keeps only the end of the output.
    while IFS= read -r test; do
      results+=("      $test")
    done < <(grep -aoE '^(FAILED|ERROR) [^ ]+' "$logs/$name.log" | sed 's/\[ansible:[^]]*\]//' | sort -u | head -8)
    tail -40 "$logs/$name.log"
  fi
}

# ansible-test insists on ansible_collections/<ns>/<name> and on its own git tree.
collection_copy() {
  local dest="$root/.cache/ansible-test/ansible_collections/mlops/mlflow"
  rm -rf "$dest" && mkdir -p "$dest"
  git ls-files -co --exclude-standard -z | grep -zv '^collections/' | xargs -0 cp --parents -t "$dest"
  (cd "$dest" && git init -q && git add -A)
  # ansible-test fetches a pip bootstrap script from a host that cannot be reached here.
  mkdir -p ~/.ansible/test/cache
  cp scripts/pip_bootstrap.py ~/.ansible/test/cache/get_pip_24_2.py
  echo "$dest"
}

want() { [[ " ${stages[*]} " == *" $1 "* ]]; }

# The docs site, from the collection copy: antsibull-docs lints every module's and role's
# docs and the extra docs (docs/docsite/), then renders them, and Sphinx builds the HTML
# (nitpicky, warnings as errors) into .cache/docs/build/html. A subshell, so that its
# ANSIBLE_COLLECTIONS_PATH stays out of the later stages.
docs_site() (
  copy=$1 dest="$root/.cache/docs"
  (cd "$copy" && antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
    --validate-collection-refs dependent --disallow-unknown-collection-refs .) || return 1
  rm -rf "$dest" && mkdir -p "$dest"
  export ANSIBLE_COLLECTIONS_PATH="${copy%/ansible_collections/*}"
  antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error --dest-dir "$dest" \
    --project mlops.mlflow --copyright "mlops.mlflow developers" --title mlops.mlflow mlops.mlflow || return 1
  # No network here: the Ansible docsite's labels come from a list of ours, not its objects.inv.
  python3 scripts/docs_inventory.py "$dest/ansible_devel.inv" || return 1
  echo "intersphinx_mapping = {'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '../ansible_devel.inv')}" \
    >>"$dest/conf.py"
  bash "$dest/build.sh"
)

# The build must be warning-free, carry the license text every file header points to
# ("see COPYING"), and ship no venv, cache or image archive.
galaxy_build() (
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  ansible-galaxy collection build --force --output-path "$out" 2>&1 | tee "$out/build.log"
  ! grep -qi warning "$out/build.log" || return 1
  # Listed to a file first: `grep -q` leaves early, and tar's SIGPIPE would fail the pipe.
  tar -tzf "$out"/mlops-mlflow-*.tar.gz >"$out/files.txt"
  grep -qx COPYING "$out/files.txt" || { echo "the build has no COPYING"; return 1; }
  ! grep -E '(^|/)(\.venv|\.cache|__pycache__|collections)/|\.tar$' "$out/files.txt" || return 1
)

if want lint; then
  run ruff bash -c 'ruff check . && ruff format --check .'
  run yamllint yamllint --strict .
  run ansible-lint ansible-lint --profile production
  run galaxy-build galaxy_build
fi
if want sanity || want unit || want docs; then
  copy=$(collection_copy)
fi
if want sanity; then
  run sanity bash -c "cd '$copy' && ansible-test sanity --python 3.11 --local --requirements --color no"
fi
if want unit; then
  run units bash -c "cd '$copy' && ansible-test units --python 3.11 --local --color no"
fi
if want docs; then
  run docs docs_site "$copy"
fi
# The functional tests need no image: with the two lanes (below), they run first in the lane that
# extensions/molecule/budgets gives them, beside the other lane's scenarios, and not before both.
# How the scenarios run (below): the named ones, all in one lane, or the budgets' two lanes.
if [ -n "${MOLECULE_SCENARIOS:-}" ]; then
  molecule_lanes=named
elif [ "${MOLECULE_LANES:-2}" = 1 ]; then
  molecule_lanes=one
else
  molecule_lanes=two
fi
functional_in_lane=false
if want functional && want molecule && [ "$molecule_lanes" = two ]; then
  functional_in_lane=true
elif want functional; then
  run functional pytest -q tests/functional
fi
# Every stage before this one ran beside the image build; Molecule needs the images.
images_rc=0
if [ -n "$images_pid" ]; then
  wait "$images_pid"
  images_rc=$?
  if [ $images_rc -eq 0 ]; then
    passed=$((passed + 1)); results+=("PASS  images ($(cat "$logs/images.took")s, in the background)")
  else
    failed=$((failed + 1)); results+=("FAIL  images (rc=$images_rc)  log: $logs/images.log")
    tail -40 "$logs/images.log"
  fi
fi

# Without the images no lane runs: the functional tests run on their own then.
if [ $images_rc -ne 0 ] && [ "$functional_in_lane" = true ]; then
  run functional pytest -q tests/functional
fi

# lane N SCENARIO...: the scenarios one after another, their outcomes into $logs/lane-N.
# Each lane has its own ANSIBLE_HOME: Molecule re-installs the collection there as each
# scenario starts, which must not happen under the other lane's running playbooks. A short
# path: the scenarios' ephemeral folders are in it, and the tunnel scenario puts ssh control
# sockets there (at most 107 bytes for a socket's path).
# shellcheck disable=SC2030 # run() counts into the lane's copies; the file carries them out
lane() (
  local n=$1 started=$SECONDS
  shift
  ANSIBLE_HOME=$(mktemp -d /tmp/mlops-lane.XXXXXX) || exit 1
  export ANSIBLE_HOME
  trap 'rm -rf "$ANSIBLE_HOME"' EXIT
  results=() passed=0 failed=0
  for scenario in "$@"; do
    if [ "$scenario" = functional ]; then
      [ "$functional_in_lane" = false ] || run functional pytest -q tests/functional
    else
      run "molecule-$scenario" molecule test -s "$scenario"
    fi
  done
  results+=("      lane $n: $* ($((SECONDS - started))s)")
  { echo "$passed $failed"; printf '%s\n' "${results[@]}"; } >"$logs/lane-$n"
)

# The scenarios run in the lanes extensions/molecule/budgets gives them, two lanes at once
# (measured safe: the lanes share no container, network, port or file; scenarios whose
# targets have the same names share a lane). MOLECULE_LANES=1 runs every scenario in one
# lane; MOLECULE_SCENARIOS="a b" runs the named ones, one after another.
budgets=extensions/molecule/budgets
if want molecule && [ $images_rc -eq 0 ]; then
  molecule_started=$SECONDS
  rm -f "$logs"/lane-*
  if [ "$molecule_lanes" = named ]; then
    lanes=1
    # shellcheck disable=SC2086 # a list of names
    lane 1 $MOLECULE_SCENARIOS
  elif [ "$molecule_lanes" = one ]; then
    lanes=1
    # shellcheck disable=SC2046 # a list of names
    lane 1 $(awk '!/^#/ && NF && $1 != "functional" {print $1}' "$budgets")
  else
    lanes=$(awk '!/^#/ && NF {print $3}' "$budgets" | sort -u)
    for n in $lanes; do
      # shellcheck disable=SC2046 # a list of names
      lane "$n" $(awk -v n="$n" '!/^#/ && $3 == n {print $1}' "$budgets") &
    done
    wait
  fi
  # shellcheck disable=SC2031 # the lanes' counts arrive through their files
  for n in $lanes; do
    if [ -f "$logs/lane-$n" ]; then
      read -r lane_passed lane_failed <"$logs/lane-$n"
      passed=$((passed + lane_passed)) failed=$((failed + lane_failed))
      mapfile -t -s 1 lane_results <"$logs/lane-$n"
      results+=("${lane_results[@]}")
    else
      failed=$((failed + 1)); results+=("FAIL  lane $n ended without its report")
    fi
  done
  results+=("      molecule: $((SECONDS - molecule_started))s from the first scenario's start to the last one's end")
fi

for stage in lint sanity unit docs functional molecule; do
  want "$stage" || { skipped=$((skipped + 1)); results+=("SKIP  $stage (not asked for)"); }
done
echo
echo "=== summary"
printf '%s\n' "${results[@]}"
echo "total: $((SECONDS / 60)) min $((SECONDS % 60)) s, set-up included"
echo "summary: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How long do backup, restore and a safe upgrade take on a realistically filled store?

A throwaway Debian 13 target (benchmarks/perf_target.py; container mlflow-bench-perf-data), reached
by Ansible over ssh as root like the other benchmarks' targets, gets MLflow 2.22.1 through
playbooks/site.yml. A client inside the MLflow container fills it through the real server API:
--runs runs with --points metric points each, and --artifact-mb files of 1 MiB of random bytes.
Then, each timed as the wall time of the users' command (ansible-playbook from the repo root; the
playbooks gather no facts):

  upgrade  playbooks/site.yml with mlflow_server_image mlops/mlflow:3.17.2: stop, pre-upgrade
           backup, mlflow db upgrade, start, wait for health;
  backup   playbooks/backup.yml while MLflow serves; size from the manifest and du;
  restore  playbooks/restore.yml of that backup, into the running MLflow (the default when it
           holds: a SQLite backup at the live schema, nothing of MLflow's outliving it): check the
           manifest, every checksum, integrity and schema; keep the live databases' copies; swap
           mlruns/'s entries; write the backup's pages into the live databases; compare the counts;
  stopped  the same restore with mlflow_server_restore_live=false, the way every restore took
           before: stop MLflow; move the store's data aside; stage and swap the backup in; start
           MLflow; wait for health; compare the counts with the manifest.

backup, restore and stopped alternate --repeat times on the same store (backup, both restores of
that backup, backup, ...): medians and minima, and the ratios to the backup per pair. Before each
restore into the running MLflow, Docker's health check must say healthy (untimed), as on a server
that has been up a while. The per-task seconds of every run (ansible.posix.json callback) show where
the time goes. --profile then times, on the target with its own python3 and the collection's store
module_utils (plugins/module_utils/_*.py), the file work of a backup (create_backup) and of a
restore (verify_backup, swap_in, store_info) against the newest backup, into a scratch store (never
the live one), and MLflow's own stop and start.

Run: .venv/bin/python benchmarks/data_safety.py [--runs 1000] [--points 100] [--artifact-mb 100] [--repeat 3]
     [--profile] [--keep]
Needs the images of scripts/images.sh 3.17.2 2.22.1 (.cache/images), Docker, ssh and the venv's ansible.
"""

import argparse
import json
import shutil
import statistics
import time
from collections import defaultdict

from perf_target import IMAGE, REPO, Target, fmt, json_out_option, log, md_table, task_rows

OLD, NEW = "2.22.1", "3.17.2"
OLD_ARCHIVE = REPO / f".cache/images/mlflow-{OLD}.tar"
MODULE_UTILS = REPO / "plugins/module_utils"
UTILS_ON_TARGET = "/var/tmp/bench-profile/ansible_collections/mlops/mlflow/plugins/module_utils"

# Runs inside the MLflow container, against the server on its loopback.
FILL = """
import os, sys, tempfile, time
from mlflow import MlflowClient
from mlflow.entities import Metric
runs, points, artifact_mb = map(int, sys.argv[1:4])
os.environ["MLFLOW_TRACKING_URI"] = "http://127.0.0.1:5000"  # artifact uploads resolve against it
client = MlflowClient()
experiment = client.create_experiment(f"benchmark-{time.time_ns()}")
scratch = tempfile.mkdtemp()
now = int(time.time() * 1000)
for index in range(runs):
    run_id = client.create_run(experiment).info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), now + step, step) for step in range(points)])
    if index < artifact_mb:
        path = os.path.join(scratch, f"weights-{index}.bin")
        with open(path, "wb") as handle:
            handle.write(os.urandom(1 << 20))
        client.log_artifact(run_id, path)
        os.unlink(path)
    client.set_terminated(run_id)
print(runs, "runs filled")
"""


# Runs on the target with its python3: the file work of the modules, step by step, and MLflow's
# stop and start, against the newest backup. Scratch store and backup dir under /var/tmp.
PROFILE = r"""
import json, os, shutil, sqlite3, subprocess, sys, time
sys.path.insert(0, "/var/tmp/bench-profile")
from ansible_collections.mlops.mlflow.plugins.module_utils._backup import (
    _files, _snapshot, create_backup, read_manifest, sha256, verify_backup,
)
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import DATABASES, integrity, store_info
from ansible_collections.mlops.mlflow.plugins.module_utils._swap import swap_in
backup = sys.argv[1]
out = {}
def timed(name, call, *args, **kwargs):
    started = time.monotonic()
    value = call(*args, **kwargs)
    out[name] = round(time.monotonic() - started, 2)
    return value
manifest = read_manifest(backup)
files = manifest["files"]
def sha_all():
    for name in files:
        sha256(os.path.join(backup, name))
def integrity_all():
    for db in DATABASES:
        if db in files and files[db]["size"] > 0:
            conn = sqlite3.connect(f"file:{os.path.join(backup, db)}?mode=ro&immutable=1", uri=True)
            integrity(conn)
            conn.close()
scratch = "/var/tmp/bench-profile/store"
shutil.rmtree(scratch, ignore_errors=True)
timed("restore: verify_backup (whole)", verify_backup, backup)
timed("restore: verify_backup, sha256 of every file", sha_all)
timed("restore: verify_backup, integrity_check of the databases", integrity_all)
timed("restore: swap_in into an empty store (copy2 databases, copytree mlruns/)", swap_in, scratch, backup)
timed("restore: swap_in again, the store's data moved aside by rename", swap_in, scratch, backup)
timed("restore: store_info (counts of the restored store)", store_info, scratch)
timed("backup: create_backup of the live store (whole)", create_backup, "/opt/mlflow", scratch + "-b", "profile")
snap = "/var/tmp/bench-profile/snap.db"
timed("backup: online backup + integrity_check of mlflow.db", _snapshot, "/opt/mlflow/db/mlflow.db", snap)
timed("backup: copytree mlruns/", shutil.copytree, "/opt/mlflow/mlruns", "/var/tmp/bench-profile/mlruns-copy")
timed("backup: sha256 of every file", _files, "/var/tmp/bench-profile/mlruns-copy")
timed("MLflow: docker stop mlflow-server", subprocess.run, ["docker", "stop", "mlflow-server"], capture_output=True)
timed("MLflow: docker start mlflow-server", subprocess.run, ["docker", "start", "mlflow-server"], capture_output=True)
import urllib.request
def health():
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:500/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
timed("MLflow: start to /health OK", health)
shutil.rmtree("/var/tmp/bench-profile", ignore_errors=True)
print(json.dumps(out))
"""


def run_playbook(target, name, extra, rows, label=None):
    """One timed ansible-playbook of playbooks/<name>; its per-task rows go to rows[label or name]."""
    run = target.playbook(REPO / "playbooks" / name, extra_vars=extra)
    if run["rc"] != 0 or run["json"] is None:
        raise SystemExit(f"{name} failed:\n{run['stdout'][-4000:]}\n{run['stderr'][-2000:]}")
    per_task = defaultdict(float)
    actions = {}
    for row in task_rows(run["json"]):
        if not row["skipped"]:
            per_task[row["task"]] += row["seconds"]
            actions[row["task"]] = row["action"]
    rows.setdefault(label or name, []).append({"seconds": run["seconds"], "tasks": dict(per_task), "actions": actions})
    return run["seconds"]


def newest_backup(target):
    name = target.exec("ls -1 /var/backups/mlflow | grep -E '^[0-9]{8}T' | sort | tail -1").stdout.strip()
    return name, json.loads(target.exec(f"cat /var/backups/mlflow/{name}/manifest.json").stdout)


def slowest(runs, top=12):
    """The costliest tasks by median seconds over runs: (task, action, median s, share of the run)."""
    per_task = defaultdict(list)
    actions = {}
    for run in runs:
        for task, seconds in run["tasks"].items():
            per_task[task].append(seconds)
            actions[task] = run["actions"][task]
    total = statistics.median(run["seconds"] for run in runs)
    ranked = sorted(per_task.items(), key=lambda item: -statistics.median(item[1]))[:top]
    return [
        (task, actions[task], fmt(values, 2), f"{100 * statistics.median(values) / total:.0f}%")
        for task, values in ranked
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100, help="metric points per run")
    parser.add_argument("--artifact-mb", type=int, default=100, help="artifact files of 1 MiB (at most --runs)")
    parser.add_argument("--repeat", type=int, default=3, help="backup/restore pairs (median taken)")
    parser.add_argument("--profile", action="store_true", help="also time the modules' file work on the target")
    parser.add_argument("--name", default="mlflow-bench-perf-data", help="the target container's name")
    json_out_option(parser, "data_safety")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()

    target = Target(args.name)
    figures = {"backup_s": [], "restore_s": [], "stopped_s": []}
    rows = {}
    try:
        target.start()  # Docker, and the 3.17.2 image: the upgrade's copy of an image is not timed
        log(f"loading mlops/mlflow:{OLD} into the target's engine")
        target.load_image(OLD_ARCHIVE)
        old = {
            "mlflow_server_image": f"mlops/mlflow:{OLD}",
            "mlflow_server_allowed_hosts": [],  # MLflow 2.x has no --allowed-hosts
        }
        run_playbook(target, "site.yml", old, rows)
        log(f"MLflow {OLD} deployed; filling it: {args.runs} runs, {args.points} points each, {args.artifact_mb} MiB")
        started = time.monotonic()
        target.exec(
            f"docker exec -i mlflow-server python - {args.runs} {args.points} {args.artifact_mb}",
            stdin=FILL,
        )
        figures["fill_s"] = round(time.monotonic() - started, 1)
        figures["db_bytes"] = int(target.exec("stat -c %s /opt/mlflow/db/mlflow.db").stdout)
        log(f"filled in {figures['fill_s']} s; mlflow.db {figures['db_bytes']} bytes")

        new = {"mlflow_server_image": IMAGE}
        figures["upgrade_s"] = round(run_playbook(target, "site.yml", new, rows), 1)
        image = target.exec("docker inspect -f '{{.Config.Image}}' mlflow-server").stdout.strip()
        assert image == IMAGE, image
        log(f"upgrade {figures['upgrade_s']} s")

        for pair in range(args.repeat):
            backup_s = run_playbook(target, "backup.yml", new, rows)
            name, manifest = newest_backup(target)
            restore = {**new, "mlflow_server_restore_from": name}
            # A restore of a settled server: MLflow restarted by the upgrade or the last pair's stopped restore
            # is "starting" until Docker's first health check (15 s), and the role waits for such an MLflow.
            target.wait_docker_healthy()
            started_at = target.exec("docker inspect -f '{{.State.StartedAt}}' mlflow-server").stdout
            restore_s = run_playbook(target, "restore.yml", restore, rows)
            if target.exec("docker inspect -f '{{.State.StartedAt}}' mlflow-server").stdout != started_at:
                raise SystemExit("the restore restarted MLflow: it did not go into the running MLflow")
            stopped_s = run_playbook(
                target, "restore.yml", {**restore, "mlflow_server_restore_live": False}, rows, "restore.yml, stopped"
            )
            figures["backup_s"].append(backup_s)
            figures["restore_s"].append(restore_s)
            figures["stopped_s"].append(stopped_s)
            log(
                f"pair {pair + 1}: backup {backup_s:.1f} s, restore {restore_s:.1f} s ({restore_s / backup_s:.2f}x), "
                f"stopped {stopped_s:.1f} s ({stopped_s / backup_s:.2f}x)"
            )
            # What the restores moved aside, so the store does not grow by a copy per pair.
            target.exec("rm -rf /opt/mlflow/kept-before-restore-*")
        figures["backup_bytes"] = manifest["bytes"]
        figures["backup_du_bytes"] = int(target.exec(f"du -sb /var/backups/mlflow/{name}").stdout.split()[0])
        figures["counts"] = manifest["counts"]

        if args.profile:
            # The module_utils as the package tree they import each other from (namespace packages).
            target.exec(f"rm -rf /var/tmp/bench-profile && mkdir -p {UTILS_ON_TARGET}")
            for util in sorted(MODULE_UTILS.glob("*.py")):
                target.exec(f"cat > {UTILS_ON_TARGET}/{util.name}", stdin=util.read_text())
            answer = target.exec(f"python3 - /var/backups/mlflow/{name}", stdin=PROFILE).stdout
            figures["profile"] = json.loads(answer.strip().splitlines()[-1])
    finally:
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    report(args, figures, rows)
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"args": vars(args) | {"json_out": None}, **figures, "runs": rows}, indent=1)
        )


def report(args, figures, rows):
    print(
        f"## Data safety: {args.runs} runs, {args.runs * args.points} metric points, {args.artifact_mb} x 1 MiB "
        f"artifacts (mlflow.db {figures['db_bytes'] / 2**20:.0f} MiB, "
        f"backup {figures['backup_bytes'] / 2**20:.0f} MiB)\n"
    )

    def ratio(key):
        paired = [r / b for b, r in zip(figures["backup_s"], figures[key], strict=True)]
        return (
            f"{statistics.median(figures[key]) / statistics.median(figures['backup_s']):.2f} (paired {fmt(paired, 2)})"
        )

    table = [
        ["fill through the API (not a playbook)", f"{figures['fill_s']:.1f}", "-"],
        [f"upgrade {OLD} -> {NEW} (playbooks/site.yml)", f"{figures['upgrade_s']:.1f}", "-"],
        ["backup (playbooks/backup.yml, MLflow serving)", fmt(figures["backup_s"]), "1.00"],
        [
            "restore (playbooks/restore.yml of that backup, into the running MLflow)",
            fmt(figures["restore_s"]),
            ratio("restore_s"),
        ],
        [
            "restore, stopped (the same, mlflow_server_restore_live=false)",
            fmt(figures["stopped_s"]),
            ratio("stopped_s"),
        ],
    ]
    print(md_table(["what", f"seconds, median (min..max) of {args.repeat}", "ratio to backup"], table))
    print(f"\nCounts in the manifest: {figures['counts']}")
    for name in ("backup.yml", "restore.yml", "restore.yml, stopped"):
        print(f"\n## Where the time goes: {name}, task seconds, median (min..max) of {len(rows[name])}\n")
        print(md_table(["task", "action", "seconds", "share of run"], slowest(rows[name])))
    if "profile" in figures:
        print("\n## The modules' file work and MLflow's stop and start, timed on the target (seconds, one run)\n")
        print(md_table(["step", "seconds"], [[step, f"{value:.2f}"] for step, value in figures["profile"].items()]))


if __name__ == "__main__":
    main()

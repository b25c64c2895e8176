#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How long do backup, restore and a safe upgrade take on a realistically filled store?

A throwaway Debian 13 target (the Molecule platform of extensions/molecule/config.yml, named
mlflow-bench) gets MLflow 2.22.1 through playbooks/site.yml. A client inside the MLflow
container fills it through the real server API: --runs runs with --points metric points each,
and --artifact-mb files of 1 MiB of random bytes. Then, each timed as the wall time of the
users' command (ansible-playbook, fact gathering included):

  upgrade  playbooks/site.yml with mlflow_server_image mlops/mlflow:3.17.2: stop, pre-upgrade
           backup, mlflow db upgrade, start, wait for health;
  backup   playbooks/backup.yml while MLflow serves; size from the manifest and du;
  restore  playbooks/restore.yml of that backup: checks, safety backup, put back, start, counts.

Run: python benchmarks/data_safety.py [--runs 1000] [--points 100] [--artifact-mb 100] [--keep]
Needs the images of scripts/images.sh 3.17.2 2.22.1 (.cache/images) and the venv's ansible.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET = "mlflow-bench"
OLD, NEW = "2.22.1", "3.17.2"
BIN = Path(sys.executable).parent

SETUP = """
- hosts: mlflow_servers
  tasks:
    - name: Install Docker with the server role's own tasks
      ansible.builtin.include_role: {name: mlops.mlflow.server, tasks_from: docker}
    - name: Load the upgrade target now, so the upgrade timing holds no image copy
      ansible.builtin.include_role: {name: mlops.mlflow.server, tasks_from: image}
      vars:
        mlflow_server_image: mlops/mlflow:%(new)s
        mlflow_server_image_archive: %(repo)s/.cache/images/mlflow-%(new)s.tar
"""

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


def sh(*command, stdin=None):
    result = subprocess.run(command, capture_output=True, text=True, input=stdin, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)[:200]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def on_target(command, stdin=None):
    return sh("docker", "exec", "-i", TARGET, "sh", "-c", command, stdin=stdin)


def start_target():
    """The Debian 13 Molecule platform, with the options of extensions/molecule/config.yml."""
    config = yaml.safe_load((REPO / "extensions/molecule/config.yml").read_text())
    platform = next(p for p in config["platforms"] if p["name"] == "debian13")
    command = ["docker", "run", "-d", "--name", TARGET, "--hostname", TARGET, "--cgroupns", platform["cgroupns_mode"]]
    command += [f"--cap-add={cap}" for cap in platform["capabilities"]]
    command += [f"--security-opt={opt}" for opt in platform["security_opts"]]
    command += [f"--tmpfs={path}" for path in platform["tmpfs"]]
    command += [f"--volume={volume}" for volume in platform["volumes"]]
    sh(*command, platform["image"], platform["command"])
    for _attempt in range(120):
        state = subprocess.run(
            ["docker", "exec", TARGET, "systemctl", "is-system-running"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise SystemExit(f"{TARGET} did not finish booting")


def playbook(workdir, path, extra):
    """ansible-playbook against the target; returns the wall time in seconds."""
    inventory = workdir / "inventory.ini"
    inventory.write_text(f"[mlflow_servers]\n{TARGET} ansible_connection=community.docker.docker\n")
    variables = workdir / "vars.json"
    variables.write_text(json.dumps(extra))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections"),
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(path), "-e", f"@{variables}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return elapsed


def newest_backup():
    name = on_target("ls -1 /var/backups/mlflow | grep -E '^[0-9]{8}T' | sort | tail -1").strip()
    return name, json.loads(on_target(f"cat /var/backups/mlflow/{name}/manifest.json"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=100, help="metric points per run")
    parser.add_argument("--artifact-mb", type=int, default=100, help="artifact files of 1 MiB (at most --runs)")
    parser.add_argument("--keep", action="store_true", help=f"leave the {TARGET} container running")
    args = parser.parse_args()

    subprocess.run(["docker", "rm", "-f", "-v", TARGET], capture_output=True, check=False)
    workdir = Path(tempfile.mkdtemp(prefix="data-safety-"))
    figures = {}
    try:
        start_target()
        setup = workdir / "setup.yml"
        setup.write_text(SETUP % {"new": NEW, "repo": REPO})
        playbook(workdir, setup, {})
        old = {
            "mlflow_server_image": f"mlops/mlflow:{OLD}",
            "mlflow_server_image_archive": str(REPO / f".cache/images/mlflow-{OLD}.tar"),
            "mlflow_server_allowed_hosts": [],  # MLflow 2.x has no --allowed-hosts
        }
        playbook(workdir, REPO / "playbooks/site.yml", old)

        started = time.monotonic()
        on_target(
            f"docker exec -i mlflow-server python - {args.runs} {args.points} {args.artifact_mb}",
            stdin=FILL,
        )
        figures["fill_s"] = round(time.monotonic() - started, 1)
        figures["db_bytes"] = int(on_target("stat -c %s /opt/mlflow/mlflow.db"))

        new = {"mlflow_server_image": f"mlops/mlflow:{NEW}", "mlflow_server_image_archive": ""}
        figures["upgrade_s"] = round(playbook(workdir, REPO / "playbooks/site.yml", new), 1)
        assert on_target("docker inspect -f '{{.Config.Image}}' mlflow-server").strip() == f"mlops/mlflow:{NEW}"

        figures["backup_s"] = round(playbook(workdir, REPO / "playbooks/backup.yml", new), 1)
        name, manifest = newest_backup()
        figures["backup_bytes"] = manifest["bytes"]
        figures["backup_du_bytes"] = int(on_target(f"du -sb /var/backups/mlflow/{name}").split()[0])
        figures["counts"] = manifest["counts"]

        figures["restore_s"] = round(
            playbook(workdir, REPO / "playbooks/restore.yml", {**new, "mlflow_server_restore_from": name}), 1
        )
    finally:
        if not args.keep:
            subprocess.run(["docker", "rm", "-f", "-v", TARGET], capture_output=True, check=False)
    print(json.dumps({"runs": args.runs, "points": args.points, "artifact_mb": args.artifact_mb, **figures}, indent=1))


if __name__ == "__main__":
    main()

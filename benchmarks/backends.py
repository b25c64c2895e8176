#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark, not a test: concurrent writers against SQLite, PostgreSQL and a two-replica Swarm.

  .venv/bin/python benchmarks/backends.py            # all three set-ups, 1 8 32 64 writers
  .venv/bin/python benchmarks/backends.py --window 20 --levels 1 8

Each writer is the real mlflow client in a loop: create a run, log_batch of 200 metrics, terminate
it (one "run"). A level runs its writers for --window seconds after a short warm-up and reports the
runs finished per second, the 95th percentile of a run's latency (the three calls together) and the
errors (no retries: MLFLOW_HTTP_REQUEST_MAX_RETRIES=0).

The servers are deployed by the role itself (playbooks/site.yml, with the role's defaults: two
workers per MLflow) into throwaway Debian 13 Docker-in-Docker targets, the platform of
extensions/molecule/config.yml (settings in shared/vars/target.yml):
  sqlite      one target, mlflow_server_backend: sqlite (mlflow.db, mlruns/);
  postgresql  the same target, purged and redeployed with the managed PostgreSQL and S3;
  swarm       two targets on one network, mlflow_server_mode: swarm, two replicas; the writers are
              spread over both nodes.
MLflow is published on the targets' own addresses here (bind 0.0.0.0, guard off), so the writers
connect straight from this machine instead of through a relay that would cost more than MLflow.
Everything shares this machine's cores: with two cores, the swarm figures measure contention, not
scale (docs/scale.md gives the argument on paper).

Results: docs/benchmark-backends.md (table) and docs/benchmark-backends.png; the raw data
(backends.json) and the deploys' logs go to .cache/benchmarks/, which git ignores.
"""

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "extensions" / "molecule" / "shared"))
from target_args import target_args as shared_target_args  # noqa: E402

BIN = Path(sys.executable).parent
IMAGES = REPO / ".cache" / "images"
LOGS = REPO / ".cache" / "benchmarks"
DOCS = REPO / "docs"
NETWORK = "mlflow-bench-scale"
SINGLE = "mlflow-bench-scale-0"
NODES = ("mlflow-bench-scale-1", "mlflow-bench-scale-2")
METRICS_PER_RUN = 200
COMMON = {
    "mlflow_server_image": "mlops/mlflow:3.17.2-full",
    "mlflow_server_image_archive": str(IMAGES / "mlflow-3.17.2-full.tar"),
    "mlflow_server_postgres_image_archive": str(IMAGES / "postgres-17.tar"),
    "mlflow_server_s3_image_archive": str(IMAGES / "seaweedfs-4.48.tar"),
    "mlflow_server_bind_address": "0.0.0.0",
    "mlflow_server_loopback_guard": False,
}
SETUPS = {
    "sqlite": {"mlflow_server_backend": "sqlite", "mlflow_server_artifacts": "local"},
    "postgresql": {"mlflow_server_backend": "postgresql", "mlflow_server_artifacts": "s3"},
    "swarm": {
        "mlflow_server_backend": "postgresql",
        "mlflow_server_artifacts": "s3",
        "mlflow_server_mode": "swarm",
        "mlflow_server_swarm_replicas": 2,
    },
}


def sh(*argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


def target_args():
    """docker run options of a Molecule target (extensions/molecule/shared/target_args.py) and the image of
    config.yml's first platform."""
    image = yaml.safe_load((REPO / "extensions/molecule/config.yml").read_text())["platforms"][0]["image"]
    return shared_target_args(), image


def start_targets(names):
    args, image = target_args()
    sh("docker", "network", "create", NETWORK, check=False)
    for name in names:
        sh("docker", "rm", "-f", name, check=False)
        sh("docker", "run", "-d", "--name", name, "--hostname", name, "--network", NETWORK, *args, image, "/sbin/init")
    for name in names:
        sh("docker", "exec", name, "systemctl", "is-system-running", "--wait", check=False)
    return {
        name: sh(
            "docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', name
        ).stdout.strip()
        for name in names
    }


def remove_targets(names):
    for name in names:
        sh("docker", "rm", "-f", "-v", name, check=False)


def deploy(addresses, extra, log):
    """ansible-playbook playbooks/site.yml on the targets (docker connection), as the README runs it."""
    inventory = {
        "mlflow_servers": {"hosts": {name: {"ansible_connection": "community.docker.docker"} for name in addresses}}
    }
    # The role's own defaults stay: its health wait asks MLflow as localhost:500 on the target.
    allowed = ["localhost:*", "127.0.0.1:*"] + [f"{ip}:*" for ip in addresses.values()]
    variables = {**COMMON, **extra, "mlflow_server_allowed_hosts": allowed}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (Path(tmp) / "vars.json").write_text(json.dumps(variables))
        started = time.monotonic()
        result = subprocess.run(
            [BIN / "ansible-playbook", "playbooks/site.yml", "-i", f"{tmp}/inventory.yml", "-e", f"@{tmp}/vars.json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
            # The venv's tools, also when only its python is named (.venv/bin/python benchmarks/...).
            env={**os.environ, "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"deploy failed ({extra}); see {log}")
    return time.monotonic() - started


# --- the writers ------------------------------------------------------------------------------


def writer_process(uris, threads, warmup, window, queue):
    """threads writers in one process (MLflow imported once), each on uris[i % len(uris)]."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "120"
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    start = time.monotonic() + 2
    results = []

    def loop(index):
        client = MlflowClient(tracking_uri=uris[index % len(uris)])
        experiment = client.get_experiment_by_name("bench").experiment_id
        while time.monotonic() < start:
            time.sleep(0.01)
        done, errors = [], 0
        while time.monotonic() < start + warmup + window:
            begun = time.monotonic()
            try:
                run_id = client.create_run(experiment).info.run_id
                now = int(time.time() * 1000)
                client.log_batch(
                    run_id, metrics=[Metric("loss", 1.0 / (i + 1), now, i) for i in range(METRICS_PER_RUN)]
                )
                client.set_terminated(run_id)
                ended = time.monotonic()
                if begun >= start + warmup and ended <= start + warmup + window:
                    done.append(ended - begun)
            except Exception:  # every failure counts, whatever its type
                if begun >= start + warmup:
                    errors += 1
                time.sleep(0.2)
        results.append((done, errors))

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    queue.put(results)


def measure(uris, writers, warmup, window):
    """runs/s, p95 latency and errors of `writers` concurrent writers spread over uris."""
    processes = min(writers, 4)
    queue = multiprocessing.Queue()
    share = [writers // processes + (1 if i < writers % processes else 0) for i in range(processes)]
    jobs = []
    for i, threads in enumerate(share):
        own = uris[i % len(uris) :] + uris[: i % len(uris)]
        jobs.append(multiprocessing.Process(target=writer_process, args=(own, threads, warmup, window, queue)))
    for job in jobs:
        job.start()
    latencies, errors = [], 0
    for _job in jobs:
        for done, failed in queue.get(timeout=warmup + window + 600):
            latencies += done
            errors += failed
    for job in jobs:
        job.join()
    latencies.sort()
    p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)] if latencies else None
    return {
        "writers": writers,
        "runs": len(latencies),
        "runs_per_s": round(len(latencies) / window, 2),
        "p95_s": round(p95, 3) if p95 is not None else None,
        "errors": errors,
    }


def prepare_experiment(uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name("bench") is None:
        client.create_experiment("bench")


# --- report -----------------------------------------------------------------------------------


def report(results, machine):
    lines = [
        "| set-up | writers | runs/s | p95 latency (s) | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for setup, rows in results.items():
        for row in rows:
            lines.append(f"| {setup} | {row['writers']} | {row['runs_per_s']} | {row['p95_s']} | {row['errors']} |")
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmark-backends.md").write_text(
        f"<!-- benchmarks/backends.py on {machine} -->\n" + "\n".join(lines) + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for setup, rows in results.items():
        xs = [row["writers"] for row in rows]
        left.plot(xs, [row["runs_per_s"] for row in rows], marker="o", label=setup)
        right.plot(xs, [row["p95_s"] or 0 for row in rows], marker="o", label=setup)
    for axis, title in ((left, "runs/s (higher is better)"), (right, "p95 latency of a run, s (lower is better)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks([row["writers"] for row in next(iter(results.values()))])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent writers")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"create run + log_batch(200 metrics) + terminate; {machine}", fontsize=9)
    figure.tight_layout()
    figure.savefig(DOCS / "benchmark-backends.png", dpi=110)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--window", type=int, default=30, help="measured seconds per level")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--keep", action="store_true", help="leave the targets running")
    args = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start"
    results, deploys = {}, {}
    try:
        single = [s for s in args.setups if s != "swarm"]
        if single:
            addresses = start_targets([SINGLE])
            for setup in single:
                if setup == "postgresql" and "sqlite" in single:
                    deploy(
                        addresses,
                        {**SETUPS["sqlite"], "mlflow_server_state": "absent", "mlflow_server_purge_data": True},
                        LOGS / "backends-purge.log",
                    )
                deploys[setup] = round(deploy(addresses, SETUPS[setup], LOGS / f"backends-{setup}.log"))
                uris = [f"http://{ip}:500" for ip in addresses.values()]
                prepare_experiment(uris[0])
                results[setup] = [measure(uris, level, args.warmup, args.window) for level in args.levels]
                print(setup, results[setup], flush=True)
            if not args.keep:
                remove_targets([SINGLE])
        if "swarm" in args.setups:
            addresses = start_targets(list(NODES))
            deploys["swarm"] = round(deploy(addresses, SETUPS["swarm"], LOGS / "backends-swarm.log"))
            uris = [f"http://{ip}:500" for ip in addresses.values()]
            prepare_experiment(uris[0])
            results["swarm"] = [measure(uris, level, args.warmup, args.window) for level in args.levels]
            print("swarm", results["swarm"], flush=True)
            if not args.keep:
                remove_targets(list(NODES))
    finally:
        (LOGS / "backends.json").write_text(
            json.dumps({"machine": machine, "deploy_s": deploys, "results": results}, indent=1)
        )
    if not args.keep:
        sh("docker", "network", "rm", NETWORK, check=False)
    print(report(results, machine))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What MLflow's authentication costs writers: the role's server without and with basic-auth.

One throwaway Debian 13 target (benchmarks/perf_target.py; container mlflow-bench-perf-auth) with
sshd, Docker and the image mlops/mlflow:3.17.2-full (MLflow's basic-auth app needs Flask-WTF;
archive .cache/images/mlflow-3.17.2-full.tar, built by scripts/images.sh), loaded before any
timing. Three configurations of the role, all with that image and the role's default workers
(auto), so that authentication is the only difference:

  noauth     mlflow_server_auth: false;
  auth       mlflow_server_auth: true, mlflow_server_auth_admin_password (generated, 24 chars),
             mlflow_server_auth_cache_ttl 0 (the role's default: every request checks the password);
  auth-ttl60 the same with mlflow_server_auth_cache_ttl: 60 (MLflow's auth_cache_ttl_seconds).

--repeat rounds, the configurations in a rotated order each round. Each configuration starts
from an empty store: both stacks down, the store dir (databases, secrets) removed, then the repo's
site.yml deploys it (a cold converge, its seconds reported). With authentication, the admin
creates an MLflow user through the API (POST /api/2.0/mlflow/users/create) and the writers log in
as that user, as a member does: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. The user
creates the experiment, so holds MANAGE on it. Then, as in writers.py: the container's CPU left to
quieten, a short warm-up, and --writers concurrent writers for --duration seconds each: forked
processes with the real MlflowClient looping runs of create_run, log_batch of 200 metrics and
set_terminated, through a real `ssh -N -L` tunnel to the target's 127.0.0.1:500.

Figures per point: runs/s, p95 seconds of a whole run (3 authenticated requests), errors, runs per
CPU-second of the MLflow container, and the ratio of each configuration to noauth, both against
the median and paired within the round.

Run: .venv/bin/python benchmarks/auth.py [--writers 8] [--duration 15] [--repeat 3] [--keep]
Needs the mlops-target:trixie, mlops/mlflow:3.17.2 and mlops/mlflow:3.17.2-full images
(scripts/images.sh), Docker, ssh. About 3 x 3 x 2 minutes on a busy 2-core host.
"""

import argparse
import json
import secrets
import shutil
import statistics
import urllib.request

from perf_target import REPO, Target, fmt, free_port, json_out_option, log, md_table, recap
from writers import basic_auth, memory, point, settle, worker_processes

FULL_IMAGE = "mlops/mlflow:3.17.2-full"
FULL_ARCHIVE = REPO / ".cache/images/mlflow-3.17.2-full.tar"
MEMBER = "bench-writer"
LABELS = {
    "noauth": "(a) no authentication",
    "auth": "(b) basic-auth, auth_cache_ttl 0 (role default)",
    "auth-ttl60": "(c) basic-auth, mlflow_server_auth_cache_ttl=60",
}


def create_user(uri, admin_password, password):
    """The member's MLflow user, made by the admin through MLflow's API."""
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/users/create",
        data=json.dumps({"username": MEMBER, "password": password}).encode(),
        headers={
            "Content-Type": "application/json",
            **basic_auth({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin_password}),
        },
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        answer.read()


def refused_without_login(uri):
    """True when the API answers 401 to a request without credentials (auth really on)."""
    try:
        with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30):
            return False
    except urllib.error.HTTPError as error:
        return error.code == 401


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", default="8", help="concurrent writer counts (default 8)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement point")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of 8 writers before each configuration")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the configurations (median taken)")
    parser.add_argument("--name", default="mlflow-bench-perf-auth", help="the target container's name")
    json_out_option(parser, "auth")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()
    writer_counts = [int(value) for value in args.writers.split(",")]
    admin_password = secrets.token_urlsafe(18)
    member_password = secrets.token_urlsafe(18)
    auth = {"mlflow_server_auth": True, "mlflow_server_auth_admin_password": admin_password}
    configs = {
        "noauth": {"mlflow_server_image": FULL_IMAGE},
        "auth": {"mlflow_server_image": FULL_IMAGE, **auth},
        "auth-ttl60": {"mlflow_server_image": FULL_IMAGE, **auth, "mlflow_server_auth_cache_ttl": 60},
    }
    names = list(configs)

    target = Target(args.name)
    tunnel = None
    measurements = []
    try:
        target.start()
        log(f"loading {FULL_IMAGE} into the target's engine")
        target.load_image(FULL_ARCHIVE)
        target.exec(f"docker image inspect {FULL_IMAGE} >/dev/null")
        playbook = target.workdir / "server.yml"
        playbook.write_text(f"- ansible.builtin.import_playbook: {REPO / 'site.yml'}\n")
        target_id = target.container_id_on_host()
        port = free_port()
        tunnel = None
        uri = f"http://127.0.0.1:{port}"
        for repeat in range(args.repeat):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                target.reset()
                run = target.playbook(playbook, extra_vars=configs[name])
                if run["rc"] != 0:
                    raise SystemExit(f"site.yml for {name} failed:\n{run['stdout'][-3000:]}\n{run['stderr'][-2000:]}")
                compose = target.exec("cat /opt/mlflow/docker-compose.yml").stdout
                assert ("basic-auth" in compose) == (name != "noauth"), compose
                if tunnel is None:
                    tunnel = target.tunnel(port)
                server_id = target.container_id("mlflow-server")
                settled = settle(server_id)
                env = None
                if name != "noauth":
                    if not refused_without_login(uri):
                        raise SystemExit(f"{name}: the API answered without a login")
                    create_user(uri, admin_password, member_password)
                    env = {"MLFLOW_TRACKING_USERNAME": MEMBER, "MLFLOW_TRACKING_PASSWORD": member_password}
                idle = memory(server_id)
                processes = worker_processes(target, "mlflow-server")
                point(uri, 8, args.warmup, tunnel.pid, server_id, target_id, env)
                for writers in writer_counts:
                    result = point(uri, writers, args.duration, tunnel.pid, server_id, target_id, env)
                    result.update(
                        config=name,
                        round=repeat + 1,
                        converge_s=run["seconds"],
                        settle_s=settled,
                        processes=processes,
                        idle_rss_mb=idle,
                        rss_mb=memory(server_id),
                        recap=recap(run["json"]),
                    )
                    measurements.append(result)
                    log(
                        f"round {repeat + 1} {name} {writers:>2} writers: {result['runs_per_s']:.1f} runs/s "
                        f"p95 {result['p95_s']:.2f}s errors {result['errors']} server {result['server_cores']:.2f} "
                        f"host {result['host_cores']:.2f} cores, {result['runs_per_server_cpu_s']:.1f} runs/CPU-s"
                    )
        target.reset()
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=10)
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    report(measurements, names, writer_counts, args)
    if args.json_out:
        args.json_out.write_text(json.dumps(measurements, indent=1))


def report(measurements, names, writer_counts, args):
    def select(config, writers, key):
        return [
            m[key]
            for m in sorted(measurements, key=lambda m: m["round"])
            if m["config"] == config and m["writers"] == writers
        ]

    for writers in writer_counts:
        print(
            f"## Authentication, {writers} concurrent writers: median (min..max) of {args.repeat} rounds, "
            f"{args.duration:.0f} s per point, interleaved on one target; ratio = runs/s / noauth's\n"
        )
        base = select("noauth", writers, "runs_per_s")
        rows = []
        for name in names:
            mine = select(name, writers, "runs_per_s")
            paired = [m / b for m, b in zip(mine, base, strict=True) if b]
            rows.append(
                [
                    LABELS[name],
                    fmt(mine),
                    f"{statistics.median(mine) / statistics.median(base):.2f}",
                    fmt(paired, 2),
                    fmt(select(name, writers, "p95_s"), 2),
                    fmt(select(name, writers, "runs_per_server_cpu_s")),
                    fmt(select(name, writers, "server_cores"), 2),
                    fmt(select(name, writers, "host_cores"), 2),
                    str(sum(select(name, writers, "errors"))),
                ]
            )
        print(
            md_table(
                [
                    "server (image mlops/mlflow:3.17.2-full, workers auto)",
                    "runs/s",
                    "ratio (medians)",
                    "paired ratio (same round)",
                    "p95 s of a run",
                    "runs per MLflow CPU-s",
                    "MLflow CPU cores",
                    "host CPU cores (of 2)",
                    "errors",
                ],
                rows,
            )
        )
        print()
    print("## Start: cold converge of site.yml, settle, processes and memory\n")
    top = writer_counts[-1]
    rows = [
        [
            LABELS[name],
            fmt(select(name, top, "converge_s")),
            fmt(select(name, top, "settle_s")),
            str(select(name, top, "processes")[0]),
            fmt(select(name, top, "idle_rss_mb"), 0),
            fmt(select(name, top, "rss_mb"), 0),
        ]
        for name in names
    ]
    print(
        md_table(
            ["server", "converge s (cold)", "settle s", "processes", "idle MiB", f"MiB after {top} w"],
            rows,
        )
    )
    samples = sorted({sample for m in measurements for sample in m["error_samples"]})
    if samples:
        print("\nError samples: " + "; ".join(samples[:5]))


if __name__ == "__main__":
    main()

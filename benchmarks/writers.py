#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write throughput of the role's server against the hand-made recipe's, by workers and writers.

One throwaway Debian 13 target (benchmarks/perf_target.py; container mlflow-bench-perf-writers)
with sshd, Docker and the MLflow image. The role (the repo's site.yml) is run once per
--workers value with -e mlflow_server_workers=N (N a number or `auto`, the role's default:
min(8, max(4, 2 x CPUs))) and the docker-compose.yml it writes is kept.
Then, --repeat rounds, the configurations in a rotated order each round:

  recipe      the seed's manual recipe (MLflow's default workers, 4; perf_target.RECIPE);
  role wN     the role's own docker-compose.yml for mlflow_server_workers=N, on the role's store
              layout (store.yml: db/mlflow.db 0666, mlruns/ 0777);
  wN-nojobs   (--jobs-off) the role's file for the first --workers value with
              mlflow_server_job_execution=false (the role then sets MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false):
              MLflow 3.17.2 otherwise starts a job runner with 7 huey consumers beside the uvicorn
              workers, whatever --workers says.

Each configuration starts from an empty store (compose down, store dir removed), is brought up
and polled until /health answers, then left until its CPU is quiet (/health answers once ONE
worker is up; the other workers and the job consumers are still importing mlflow), then gets a
short warm-up, then 1, 8 and 32 concurrent writers (--writers) for --duration seconds each. A writer is
a forked process with the real MlflowClient, looping over runs of: create_run, log_batch of 200
metrics (10 keys x 20 steps), set_terminated. Writers reach MLflow the way a member does: a
real `ssh -N -L 127.0.0.1:<port>:127.0.0.1:500` tunnel from this controller to the target.

Figures per point: runs/s (runs finished within the window / window), p95 seconds of a whole
run, errors (exceptions after MlflowClient's own retries), CPU cores used by the writers, the
ssh tunnel, the MLflow container and the whole host (to tell whether the client or the host
saturates), and the MLflow container's memory (cgroup rss) idle and after the 32-writer point.
The table gives the median over rounds and the ratio of each role configuration to the recipe.

Run: .venv/bin/python benchmarks/writers.py [--workers auto] [--writers 1,8,32] [--duration 15]
     [--repeat 3] [--jobs-off] [--keep]
The role's default against the recipe: .venv/bin/python benchmarks/writers.py --workers auto --jobs-off
The workers sweep: .venv/bin/python benchmarks/writers.py --workers 2,4,6,8 --jobs-off
Needs the mlops-target:trixie and mlops/mlflow:3.17.2 images (scripts/images.sh), Docker, ssh.
About (1 + workers) x repeat x (60 s + writers x (duration + 3 s)) on a busy 2-core host: some 25 minutes
by default, 40 for the sweep.
"""

import argparse
import base64
import json
import multiprocessing
import os
import re
import shutil
import statistics
import time
import urllib.request

from mlflow import MlflowClient
from mlflow.entities import Metric
from perf_target import (
    RECIPE_PROJECT,
    REPO,
    STORE,
    Target,
    cgroup_value,
    fmt,
    free_port,
    host_cpu_busy,
    json_out_option,
    log,
    md_table,
    process_cpu_seconds,
    recap,
)

KEYS, STEPS = 10, 20  # 200 metric points per log_batch


def writer(uri, experiment_id, start_at, stop_at, queue, env=None):
    """One writer process: runs until stop_at; reports (start, end, error) per run and its CPU seconds.
    env: extra environment, such as MLFLOW_TRACKING_USERNAME/PASSWORD for a server with authentication."""
    # MlflowClient prints a "View run" line per run; keep the benchmark's stdout for its tables.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.environ.update(env or {})
    client = MlflowClient(uri)
    records = []
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    while time.time() < stop_at:
        began = time.time()
        try:
            run_id = client.create_run(experiment_id).info.run_id
            now = int(began * 1000)
            client.log_batch(
                run_id,
                metrics=[
                    Metric(f"m{key}", 1.0 / (step + 1), now + step, step)
                    for key in range(KEYS)
                    for step in range(STEPS)
                ],
            )
            client.set_terminated(run_id)
            records.append((began, time.time(), None))
        except Exception as error:  # any failure the client reports after its own retries
            records.append((began, time.time(), f"{type(error).__name__}: {str(error)[:160]}"))
    queue.put((records, time.process_time() - cpu))


def basic_auth(env):
    """The Authorization header for the MLFLOW_TRACKING_USERNAME/PASSWORD in env, or none."""
    if not (env or {}).get("MLFLOW_TRACKING_USERNAME"):
        return {}
    token = f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def create_experiment(uri, name, env=None):
    """Without MlflowClient, so the parent holds no pooled connection that forked writers would share."""
    request = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/experiments/create",
        data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json", **basic_auth(env)},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["experiment_id"]


def point(uri, writers, duration, tunnel_pid, server_id, target_id, env=None):
    """One measurement: `writers` forked processes for `duration` seconds (env: see writer)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    experiment_id = create_experiment(uri, f"bench-{writers}-{time.time_ns()}", env)
    start_at = time.time() + 1.0 + 0.03 * writers
    stop_at = start_at + duration
    processes = [
        context.Process(target=writer, args=(uri, experiment_id, start_at, stop_at, queue, env))
        for _index in range(writers)
    ]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at - time.time()))
    tunnel_cpu = process_cpu_seconds(tunnel_pid)
    server_cpu = cgroup_value("cpuacct", server_id, "cpuacct.usage") or 0
    target_cpu = cgroup_value("cpuacct", target_id, "cpuacct.usage") or 0
    busy, total = host_cpu_busy()
    time.sleep(max(0.0, stop_at - time.time()))
    busy_end, total_end = host_cpu_busy()
    window = duration
    server_cores = ((cgroup_value("cpuacct", server_id, "cpuacct.usage") or 0) - server_cpu) / 1e9 / window
    target_cores = ((cgroup_value("cpuacct", target_id, "cpuacct.usage") or 0) - target_cpu) / 1e9 / window
    tunnel_cores = (process_cpu_seconds(tunnel_pid) - tunnel_cpu) / window
    host_cores = (busy_end - busy) / (total_end - total) * os.cpu_count()
    records, client_cpu = [], 0.0
    for _dummy in processes:
        got, cpu = queue.get(timeout=600)
        records += got
        client_cpu += cpu
    for process in processes:
        process.join()
    done = [r for r in records if r[2] is None and r[1] <= stop_at]
    latencies = sorted(r[1] - r[0] for r in records if r[2] is None)
    errors = [r[2] for r in records if r[2] is not None]
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan")
    return {
        "writers": writers,
        "runs": len(done),
        "runs_per_s": len(done) / window,
        "runs_per_server_cpu_s": len(done) / (server_cores * window) if server_cores else 0.0,
        "p95_s": p95,
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:3],
        "client_cores": client_cpu / window,
        "tunnel_cores": tunnel_cores,
        "server_cores": server_cores,
        "target_other_cores": target_cores,
        "host_cores": host_cores,
    }


def memory(server_id):
    stat = cgroup_value("memory", server_id, "memory.stat") or {}
    return stat.get("total_rss", stat.get("rss", 0)) / 2**20


def capture_role_compose(target, role_configs):
    """Run the role once per configuration ({name: extra vars}); keep the docker-compose.yml it wrote."""
    playbook = target.workdir / "server.yml"
    playbook.write_text(f"- ansible.builtin.import_playbook: {REPO / 'site.yml'}\n")
    files = {}
    for name, extra_vars in role_configs.items():
        run = target.playbook(playbook, extra_vars=extra_vars)
        if run["rc"] != 0:
            raise SystemExit(f"site.yml with {extra_vars} failed:\n{run['stdout'][-3000:]}\n{run['stderr'][-2000:]}")
        files[name] = target.exec(f"cat {STORE}/docker-compose.yml").stdout
        workers = extra_vars["mlflow_server_workers"]
        found = re.search(r'"--workers", "([0-9]+)"', files[name])
        assert found and (workers == "auto" or found.group(1) == str(workers)), files[name]
        log(f"role compose for {name} ({extra_vars}) captured: --workers {found.group(1)}; recap {recap(run['json'])}")
    return files


def settle(server_id, timeout=120.0, quiet=0.15):
    """Wait until the MLflow container's CPU falls below `quiet` cores over 2 s: /health answers as soon
    as ONE uvicorn worker is up, while the others and MLflow's job runner (7 huey consumers in 3.17.2)
    still import mlflow. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cgroup_value("cpuacct", server_id, "cpuacct.usage") or 0
        time.sleep(2)
        if ((cgroup_value("cpuacct", server_id, "cpuacct.usage") or 0) - before) / 2e9 < quiet:
            break
    return time.monotonic() - started


def worker_processes(target, name=None):
    """Processes in the MLflow container (uvicorn parent, its workers, MLflow's job runner...)."""
    name = name or target.exec("docker ps --format '{{.Names}}' | head -1").stdout.strip()
    return len(target.exec(f"docker top {name} -eo pid").stdout.strip().splitlines()) - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workers", default="auto", help="mlflow_server_workers values for the role (auto = the role's default)"
    )
    parser.add_argument("--writers", default="1,8,32", help="concurrent writer counts")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measurement point")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of 8 writers before each configuration")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all configurations (median taken)")
    parser.add_argument(
        "--jobs-off",
        action="store_true",
        help="also measure the first --workers value with mlflow_server_job_execution=false",
    )
    parser.add_argument("--name", default="mlflow-bench-perf-writers", help="the target container's name")
    json_out_option(parser, "writers")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()
    workers_list = [value.strip() if value.strip() == "auto" else int(value) for value in args.workers.split(",")]
    writer_counts = [int(value) for value in args.writers.split(",")]
    role_configs = {f"w{workers}": {"mlflow_server_workers": workers} for workers in workers_list}
    if args.jobs_off:
        role_configs[f"w{workers_list[0]}-nojobs"] = {
            "mlflow_server_workers": workers_list[0],
            "mlflow_server_job_execution": False,
        }
    configs = ["recipe", *role_configs]

    target = Target(args.name)
    tunnel = None
    measurements = []
    try:
        target.start()
        compose = capture_role_compose(target, role_configs)
        target_id = target.container_id_on_host()
        port = free_port()
        tunnel = target.tunnel(port)
        uri = f"http://127.0.0.1:{port}"
        for repeat in range(args.repeat):
            shift = repeat % len(configs)
            for config in configs[shift:] + configs[:shift]:
                target.reset()
                if config == "recipe":
                    started = target.recipe()
                    server_id = target.container_id(f"{RECIPE_PROJECT}-mlflow-1")
                else:
                    started = target.start_compose(compose[config])
                    server_id = target.container_id("mlflow-server")
                settled = settle(server_id)
                idle = memory(server_id)
                processes = worker_processes(target)
                point(uri, 8, args.warmup, tunnel.pid, server_id, target_id)
                for writers in writer_counts:
                    result = point(uri, writers, args.duration, tunnel.pid, server_id, target_id)
                    result.update(
                        config=config, round=repeat + 1, start_s=started, settle_s=settled, processes=processes
                    )
                    result["idle_rss_mb"] = idle
                    result["rss_mb"] = memory(server_id)
                    measurements.append(result)
                    log(
                        f"round {repeat + 1} {config} {writers:>2} writers: {result['runs_per_s']:.1f} runs/s "
                        f"p95 {result['p95_s']:.2f}s errors {result['errors']} client {result['client_cores']:.2f} "
                        f"server {result['server_cores']:.2f} host {result['host_cores']:.2f} cores "
                        f"rss {result['rss_mb']:.0f} MiB"
                    )
        target.reset()
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=10)
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    report(measurements, configs, writer_counts, args)
    if args.json_out:
        args.json_out.write_text(json.dumps(measurements, indent=1))


def report(measurements, configs, writer_counts, args):
    def select(config, writers, key):
        return [m[key] for m in measurements if m["config"] == config and m["writers"] == writers]

    label = {"recipe": "recipe (MLflow default, 4 workers)"}
    for config in configs[1:]:
        workers = config[1:].removesuffix("-nojobs")
        label[config] = f"role, mlflow_server_workers={workers}" + (" (default)" if workers == "auto" else "")
        if config.endswith("-nojobs"):
            label[config] = f"role, workers={workers}, mlflow_server_job_execution=false"
    print(
        f"## Writers: runs/s, median (min..max) of {args.repeat} rounds, {args.duration:.0f} s per point; "
        "ratio = median runs/s of the configuration / of the recipe\n"
    )
    headers = ["server"]
    for writers in writer_counts:
        headers += [f"{writers} w runs/s", f"{writers} w ratio"]
    rows = []
    for config in configs:
        row = [label[config]]
        for writers in writer_counts:
            mine = select(config, writers, "runs_per_s")
            base = statistics.median(select("recipe", writers, "runs_per_s"))
            row += [fmt(mine), f"{statistics.median(mine) / base:.2f}" if base else "-"]
        rows.append(row)
    print(md_table(headers, rows))

    print(
        "\n## Efficiency: runs per CPU-second of the MLflow container (median of rounds); less sensitive "
        "than runs/s to CPU taken by other programs on the host\n"
    )
    headers = ["server"] + [f"{writers} w runs/CPU-s" for writers in writer_counts]
    rows = [[label[c]] + [fmt(select(c, w, "runs_per_server_cpu_s")) for w in writer_counts] for c in configs]
    print(md_table(headers, rows))

    print("\n## Latency and errors: p95 seconds of a whole run (median of rounds), errors summed over rounds\n")
    headers = ["server"]
    for writers in writer_counts:
        headers += [f"{writers} w p95 s", f"{writers} w errors"]
    rows = []
    for config in configs:
        row = [label[config]]
        for writers in writer_counts:
            row += [fmt(select(config, writers, "p95_s"), 2), str(sum(select(config, writers, "errors")))]
        rows.append(row)
    print(md_table(headers, rows))

    print(
        "\n## CPU (cores, median of rounds) at the largest writer count, start time, processes and memory "
        "(cgroup rss of the MLflow container)\n"
    )
    top = writer_counts[-1]
    rows = []
    for config in configs:
        rows.append(
            [
                label[config],
                fmt(select(config, top, "client_cores"), 2),
                fmt(select(config, top, "tunnel_cores"), 2),
                fmt(select(config, top, "server_cores"), 2),
                fmt(select(config, top, "host_cores"), 2),
                fmt(select(config, top, "start_s")),
                fmt(select(config, top, "settle_s")),
                str(select(config, top, "processes")[0]),
                fmt(select(config, top, "idle_rss_mb"), 0),
                fmt(select(config, top, "rss_mb"), 0),
            ]
        )
    print(
        md_table(
            [
                "server",
                f"writers' CPU ({top} w)",
                "ssh tunnel CPU",
                "MLflow container CPU",
                f"host CPU (of {os.cpu_count()})",
                "start s (up + health)",
                "then settle s (CPU quiet)",
                "processes in container",
                "idle MiB",
                f"MiB after {top} w",
            ],
            rows,
        )
    )
    samples = sorted({sample for m in measurements for sample in m["error_samples"]})
    if samples:
        print("\nError samples: " + "; ".join(samples[:5]))


if __name__ == "__main__":
    main()

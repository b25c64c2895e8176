#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which mlflow_server_workers never loses to the recipe: paired A/B bursts on one target.

writers.py measures each configuration in its own time slot; on a shared 2-core host the CPU
left by other programs swings 2-3x between slots, more than any workers effect. This sweep
pairs instead: the recipe's server (MLflow's default workers, 4; published on the target's
127.0.0.1:5001) and the role's server (the role's own docker-compose.yml for
mlflow_server_workers=N, unchanged, 127.0.0.1:500) run SIDE BY SIDE on the same target, both
from an empty store, both settled (CPU quiet) and warmed up. Then short bursts of the same
writer load alternate between them (recipe, role, role, recipe, ...), --pairs times per writer
count, through two real `ssh -L` tunnels. Each pair gives a ratio role/recipe measured within
seconds, under the same background load. The idle server of the pair costs little CPU (under
0.15 cores when settled).

A writer is a forked process with the real MlflowClient doing runs of create_run, log_batch of
200 metrics, set_terminated (writers.py's writer). Memory is the cgroup rss of each MLflow
container, idle after settling and after the last burst.

Run: .venv/bin/python benchmarks/workers_sweep.py [--workers auto,2,4,6,8] [--writers 1,8,32] [--pairs 3]
     [--duration 8] [--jobs-off] [--keep]
About 5 minutes per workers value on a busy 2-core host.
"""

import argparse
import json
import shutil
import statistics
import time

from perf_target import RECIPE_PROJECT, Target, fmt, free_port, json_out_option, log, md_table
from writers import capture_role_compose, memory, point, settle, worker_processes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--workers", default="auto,2,4,6,8", help="mlflow_server_workers values (auto = the role's default)"
    )
    parser.add_argument("--writers", default="1,8,32", help="concurrent writer counts")
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs per writer count (median ratio)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per burst")
    parser.add_argument(
        "--jobs-off", action="store_true", help="also the first --workers value with mlflow_server_job_execution=false"
    )
    parser.add_argument("--name", default="mlflow-bench-perf-sweep", help="the target container's name")
    json_out_option(parser, "workers_sweep")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()
    writer_counts = [int(value) for value in args.writers.split(",")]
    workers_list = [w.strip() if w.strip() == "auto" else int(w) for w in args.workers.split(",")]
    role_configs = {f"w{w}": {"mlflow_server_workers": w} for w in workers_list}
    if args.jobs_off:
        role_configs[f"w{workers_list[0]}-nojobs"] = {
            "mlflow_server_workers": workers_list[0],
            "mlflow_server_job_execution": False,
        }

    target = Target(args.name)
    tunnels = {}
    bursts, servers = [], []
    try:
        target.start()
        compose = capture_role_compose(target, role_configs)
        target_id = target.container_id_on_host()
        ports = {"role": free_port()}
        ports["recipe"] = free_port()
        while ports["recipe"] == ports["role"]:
            ports["recipe"] = free_port()
        tunnels["role"] = target.tunnel(ports["role"], 500)
        tunnels["recipe"] = target.tunnel(ports["recipe"], 5001)
        uris = {side: f"http://127.0.0.1:{port}" for side, port in ports.items()}
        for config in role_configs:
            target.reset()
            target.recipe(port=5001)
            target.start_compose(compose[config])
            ids = {"recipe": target.container_id(f"{RECIPE_PROJECT}-mlflow-1"), "role": target.container_id()}
            server = {"config": config}
            for side in ("role", "recipe"):
                server[f"{side}_settle_s"] = settle(ids[side])
            for side in ("role", "recipe"):
                server[f"{side}_idle_mb"] = memory(ids[side])
                server[f"{side}_processes"] = worker_processes(target, "mlflow-server" if side == "role" else ids[side])
                point(uris[side], 8, 3.0, tunnels[side].pid, ids[side], target_id)
            for writers in writer_counts:
                for pair in range(args.pairs):
                    order = ("recipe", "role") if pair % 2 == 0 else ("role", "recipe")
                    got = {}
                    for side in order:
                        got[side] = point(uris[side], writers, args.duration, tunnels[side].pid, ids[side], target_id)
                    ratio = (
                        got["role"]["runs_per_s"] / got["recipe"]["runs_per_s"] if got["recipe"]["runs_per_s"] else 0
                    )
                    bursts.append({"config": config, "writers": writers, "pair": pair, "ratio": ratio, **got})
                    log(
                        f"{config} {writers:>2} writers pair {pair + 1}: role {got['role']['runs_per_s']:.1f} "
                        f"recipe {got['recipe']['runs_per_s']:.1f} runs/s ratio {ratio:.2f} "
                        f"(host {got['role']['host_cores']:.2f}/{got['recipe']['host_cores']:.2f} cores)"
                    )
            for side in ("role", "recipe"):
                server[f"{side}_after_mb"] = memory(ids[side])
            servers.append(server)
            log(f"{config}: {server}")
        target.reset()
    finally:
        for tunnel in tunnels.values():
            tunnel.terminate()
            tunnel.wait(timeout=10)
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    report(bursts, servers, role_configs, writer_counts, args)
    if args.json_out:
        args.json_out.write_text(json.dumps({"bursts": bursts, "servers": servers}, indent=1))


def report(bursts, servers, role_configs, writer_counts, args):
    def label(config):
        workers = config[1:].removesuffix("-nojobs")
        if config.endswith("-nojobs"):
            return f"workers={workers}, job runner off"
        return f"workers={workers}" + (" (default)" if workers == "auto" else "")

    print(
        f"## Paired A/B: role/recipe runs/s, median (min..max) of {args.pairs} pairs of {args.duration:.0f} s bursts; "
        "the recipe runs MLflow's default 4 workers\n"
    )
    headers = ["role configuration"]
    for writers in writer_counts:
        headers += [f"{writers} w ratio", f"{writers} w runs/s role / recipe"]
    rows = []
    for config in role_configs:
        row = [label(config)]
        for writers in writer_counts:
            mine = [b for b in bursts if b["config"] == config and b["writers"] == writers]
            row += [
                fmt([b["ratio"] for b in mine], 2),
                f"{statistics.median(b['role']['runs_per_s'] for b in mine):.1f} / "
                f"{statistics.median(b['recipe']['runs_per_s'] for b in mine):.1f}",
            ]
        rows.append(row)
    print(md_table(headers, rows))

    print(
        "\n## p95 seconds of a whole run (role / recipe, median of pairs), errors (role / recipe, summed), "
        "CPU of the MLflow containers (role / recipe, median)\n"
    )
    headers = ["role configuration"] + [f"{writers} w p95 s" for writers in writer_counts]
    headers += ["errors", f"MLflow CPU cores at {writer_counts[-1]} w"]
    rows = []
    for config in role_configs:
        row = [label(config)]
        for writers in writer_counts:
            mine = [b for b in bursts if b["config"] == config and b["writers"] == writers]
            row.append(
                f"{statistics.median(b['role']['p95_s'] for b in mine):.2f} / "
                f"{statistics.median(b['recipe']['p95_s'] for b in mine):.2f}"
            )
        mine = [b for b in bursts if b["config"] == config]
        row.append(f"{sum(b['role']['errors'] for b in mine)} / {sum(b['recipe']['errors'] for b in mine)}")
        top = [b for b in mine if b["writers"] == writer_counts[-1]]
        row.append(
            f"{statistics.median(b['role']['server_cores'] for b in top):.2f} / "
            f"{statistics.median(b['recipe']['server_cores'] for b in top):.2f}"
        )
        rows.append(row)
    print(md_table(headers, rows))

    print("\n## Memory (cgroup rss, MiB) and processes of the role's container; the recipe's beside it\n")
    rows = [
        [
            label(s["config"]),
            s["role_processes"],
            f"{s['role_idle_mb']:.0f}",
            f"{s['role_after_mb']:.0f}",
            f"{s['recipe_idle_mb']:.0f} / {s['recipe_after_mb']:.0f}",
            f"{s['role_settle_s']:.0f}",
        ]
        for s in servers
    ]
    print(
        md_table(
            [
                "role configuration",
                "processes",
                "idle MiB",
                f"MiB after {writer_counts[-1]} w",
                "recipe idle / after MiB",
                "settle s after health",
            ],
            rows,
        )
    )
    samples = sorted({e for b in bursts for side in ("role", "recipe") for e in b[side]["error_samples"]})
    if samples:
        print("\nError samples: " + "; ".join(samples[:5]))
    print(f"\n(finished {time.strftime('%Y-%m-%d %H:%M')})")


if __name__ == "__main__":
    main()

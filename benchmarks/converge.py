#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How close is a converge to the cost of the work: the role against the hand-made recipe.

One throwaway Debian 13 target (benchmarks/perf_target.py; container mlflow-bench-perf-converge)
plays the lab server: sshd with a root key, Docker installed by the role's docker.yml and the
MLflow image loaded BEFORE any timing. On that target, in one run, interleaved, each --repeat times:

  recipe       the seed's manual recipe over one ssh session: mkdir the store, mlflow.db 0666,
               mlruns/ 0777, a docker-compose.yml (SQLite, --serve-artifacts, 127.0.0.1:5000,
               MLflow's default workers), `docker compose up -d`, poll /health until OK;
  recipe warm  the same script again with the stack up (compose up is a no-op), for reference;
  cold         ansible-playbook of a playbook that imports the repo's site.yml (server role, image
               present, store dir absent) and then applies the client role ALONE on the controller
               (one Host block in a scratch ssh config), wall time of ansible-playbook;
  warm         the same playbook again with nothing to change; the recap must say changed=0. It
               starts seconds after the cold run's, while Docker's first health check of the new
               container is still to come, so the role still asks MLflow for its health;
  settled      the same again once Docker's health check says healthy: a re-run of a settled host
               (the role leaves a healthy MLflow alone); changed=0 too.
  floor        a playbook of the same two plays on the same hosts with one ping each: what
               Ansible itself costs (start-up, connections, one module run per host) before any work.

Between runs both stacks go down and the store dirs are removed (and the client's scratch
config). Each ansible-playbook run gets a fresh ssh ControlPath dir, so no control master of an
earlier run helps it. Connection variants (--variants):

  default      the repo as it is: its ansible.cfg (pipelining = True, ssh_args
               "-C -o ControlMaster=auto -o ControlPersist=60s"; forks 20);
  nopipelining ANSIBLE_PIPELINING=False: the connection settings of the before-figures' "default"
               (ansible.cfg then set only interpreter_python), so the role's own work compares alone;
  pipelining   ANSIBLE_PIPELINING=True (the same as default since ansible.cfg sets it);
  nocp         ANSIBLE_SSH_ARGS="-C": no control master, one ssh connection per module.

It prints Markdown tables: seconds (median, min..max) and ratios to the recipe's cold time, the
task and module counts of the warm run, and the 10 slowest tasks of cold and warm runs.

Run: .venv/bin/python benchmarks/converge.py [--repeat 3] [--variants default,nopipelining,nocp] [--keep]
Needs the mlops-target:trixie and mlops/mlflow:3.17.2 images (scripts/images.sh), Docker, ssh.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

import yaml
from perf_target import BIN, REPO, Target, _seconds, counts, fmt, json_out_option, log, md_table, recap, task_rows

PHASES = ("cold", "warm", "settled")
VARIANTS = {
    "default": {},
    "nopipelining": {"ANSIBLE_PIPELINING": "False"},
    "pipelining": {"ANSIBLE_PIPELINING": "True"},
    "nocp": {"ANSIBLE_SSH_ARGS": "-C"},
}


def converge_playbook(target, client_dir):
    """The repo's site.yml, then the client role alone for one member on the controller."""
    plays = [
        {
            "name": "The server role, as the repo's site.yml runs it",
            "ansible.builtin.import_playbook": str(REPO / "site.yml"),
        },
        {
            "name": "One member's Host block on the controller (the client role alone)",
            "hosts": "mlflow_clients",
            "gather_facts": False,
            "roles": [
                {
                    "role": "mlops.mlflow.client",
                    "vars": {
                        "mlflow_client_ssh_config_path": str(client_dir / ".ssh/config"),
                        "mlflow_client_host_alias": "mlflowserver",
                        "mlflow_client_hostname": target.address,
                        "mlflow_client_ssh_user": "root",
                        "mlflow_client_identity_file": str(target.key),
                        "mlflow_client_local_port": 15000,
                        "mlflow_client_ssh_options": {"UserKnownHostsFile": str(target.known_hosts)},
                    },
                }
            ],
        },
    ]
    path = target.workdir / "converge.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def floor_playbook(target):
    """The converge's shape with no work: the same two plays on the same hosts, one ping each."""
    plays = [
        {"name": "Server", "hosts": "mlflow_servers", "gather_facts": False, "tasks": [{"ansible.builtin.ping": None}]},
        {"name": "PC", "hosts": "mlflow_clients", "gather_facts": False, "tasks": [{"ansible.builtin.ping": None}]},
    ]
    path = target.workdir / "floor.yml"
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    return path


def play_seconds(document):
    """{play name: seconds} from the json callback."""
    out = {}
    for play in document.get("plays", []):
        duration = play["play"]["duration"]
        if duration.get("end"):
            out[play["play"]["name"]] = _seconds(duration["end"]) - _seconds(duration["start"])
    return out


def ansible_settings():
    """What the repo's ansible.cfg changes, and the effective ssh connection settings."""
    changed = subprocess.run(
        [str(BIN / "ansible-config"), "dump", "--only-changed"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout
    connection = subprocess.run(
        [str(BIN / "ansible-config"), "dump", "-t", "connection"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout
    wanted = sorted(
        {line.strip() for line in connection.splitlines() if line.split("(")[0] in ("ssh_args", "pipelining")}
    )
    lines = [line for line in changed.splitlines() if line.strip() and "GALAXY" not in line] + wanted
    # Paths relative to the repo root, so a report carries no path of the machine it ran on.
    return [line.replace(f"{REPO}/", "") for line in lines]


def slowest(runs, server, top=10):
    """The top tasks by median seconds over runs: (task, action, median s, share of the run)."""
    per_task = defaultdict(list)
    actions = {}
    totals = [run["seconds"] for run in runs]
    for run in runs:
        seen = defaultdict(float)
        for row in task_rows(run["json"]):
            key = f"{row['task']} [{row['host'].replace(server, 'server')}]"
            seen[key] += row["seconds"]
            actions[key] = row["action"]
        for key, seconds in seen.items():
            per_task[key].append(seconds)
    ranked = sorted(per_task.items(), key=lambda item: -statistics.median(item[1]))[:top]
    total = statistics.median(totals)
    return [
        (name, actions[name], f"{statistics.median(values):.2f}", f"{100 * statistics.median(values) / total:.0f}%")
        for name, values in ranked
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--variants", default="default,nopipelining,nocp", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--name", default="mlflow-bench-perf-converge", help="the target container's name")
    json_out_option(parser, "converge")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()
    variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    target = Target(args.name)
    client_dir = target.workdir / "client"
    results = {"recipe": [], "recipe_warm": [], "floor": []}
    runs = {variant: {phase: [] for phase in PHASES} for variant in variants}
    problems = []
    try:
        target.start()
        playbook = converge_playbook(target, client_dir)
        floor = floor_playbook(target)
        for repeat in range(args.repeat):
            for variant in variants:
                target.reset()
                seconds = target.recipe()
                results["recipe"].append(seconds)
                results["recipe_warm"].append(target.recipe())
                log(f"round {repeat + 1} {variant}: recipe {seconds:.1f}s")

                target.reset()
                shutil.rmtree(client_dir, ignore_errors=True)
                for phase in PHASES:
                    if phase == "settled":
                        target.wait_docker_healthy()
                    run = target.playbook(playbook, env=VARIANTS[variant])
                    if run["rc"] != 0 or run["json"] is None:
                        raise SystemExit(f"{variant} {phase} failed:\n{run['stdout'][-4000:]}\n{run['stderr'][-2000:]}")
                    changed = {host: stat["changed"] for host, stat in recap(run["json"]).items()}
                    if phase != "cold" and any(changed.values()):
                        names = [row["task"] for row in task_rows(run["json"]) if row["changed"]]
                        problems.append(f"{variant} warm run {repeat + 1} changed {changed}: {names}")
                    run["plays"] = play_seconds(run["json"])
                    run["counts"] = counts(run["json"])
                    run["recipe"] = seconds
                    runs[variant][phase].append(run)
                    log(f"round {repeat + 1} {variant}: {phase} {run['seconds']:.1f}s changed={changed}")
                run = target.playbook(floor, env=VARIANTS[variant])
                if variant == variants[0] and run["rc"] == 0:
                    results["floor"].append(run["seconds"])
                log(f"round {repeat + 1} {variant}: floor {run['seconds']:.1f}s")
        target.reset()
    finally:
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    recipe = statistics.median(results["recipe"])
    rows = [
        ["manual recipe, cold (one ssh session)", fmt(results["recipe"]), "1.00", "-", "-"],
        [
            "manual recipe, again (stack up)",
            fmt(results["recipe_warm"]),
            f"{statistics.median(results['recipe_warm']) / recipe:.2f}",
            "-",
            "-",
        ],
    ]
    if results["floor"]:
        rows.append(
            [
                f"Ansible alone: the same two plays, one ping each ({variants[0]})",
                fmt(results["floor"]),
                f"{statistics.median(results['floor']) / recipe:.2f}",
                "-",
                "-",
            ]
        )
    for variant in variants:
        for phase in PHASES:
            seconds = [run["seconds"] for run in runs[variant][phase]]
            server = [next(iter(run["plays"].values())) for run in runs[variant][phase]]
            paired = [run["seconds"] / run["recipe"] for run in runs[variant][phase]]
            rows.append(
                [
                    f"role {phase} ({variant})",
                    fmt(seconds),
                    f"{statistics.median(seconds) / recipe:.2f}",
                    f"{statistics.median(paired):.2f}",
                    fmt(server),
                ]
            )
    print(f"## Converge: seconds, median (min..max) of {args.repeat}; ratio to the recipe's cold median\n")
    print(
        md_table(
            ["what", "seconds", "ratio to recipe cold", "paired ratio (same round)", "server play only (s)"],
            rows,
        )
    )

    print("\n## Work done by a run (default variant; tasks counted per host)\n")
    count_rows = []
    for phase in PHASES:
        run = runs[variants[0]][phase][-1]
        stat = recap(run["json"])
        count_rows.append(
            [
                phase,
                run["counts"]["tasks_run"],
                f"{run['counts']['module_runs']} ("
                + ", ".join(
                    f"{host.replace(args.name, 'server')} {n}"
                    for host, n in run["counts"]["module_runs_per_host"].items()
                )
                + ")",
                run["counts"]["skipped"],
                ", ".join(f"{host.replace(args.name, 'server')}: changed={s['changed']}" for host, s in stat.items()),
            ]
        )
    print(
        md_table(
            ["run", "tasks run", "module runs (not assert/debug/set_fact/include/arg spec)", "skipped", "recap"],
            count_rows,
        )
    )

    for phase in PHASES:
        print(f"\n## The 10 slowest tasks, {phase} run ({variants[0]} variant, median s of {args.repeat})\n")
        print(
            md_table(["task [host]", "action", "seconds", "share of run"], slowest(runs[variants[0]][phase], args.name))
        )

    print("\n## Ansible settings in force (repo root)\n")
    for line in ansible_settings():
        print(f"- `{line}`")
    if problems:
        print("\n## Problems\n")
        for problem in problems:
            print(f"- {problem}")

    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {
                    **results,
                    "role": {
                        variant: {
                            phase: [
                                {
                                    "seconds": run["seconds"],
                                    "recipe": run["recipe"],
                                    "plays": run["plays"],
                                    "counts": run["counts"],
                                    "tasks": task_rows(run["json"]),
                                }
                                for run in phase_runs
                            ]
                            for phase, phase_runs in by_phase.items()
                        }
                        for variant, by_phase in runs.items()
                    },
                },
                indent=1,
            )
        )
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()

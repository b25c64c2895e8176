#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How does onboarding scale with the team: playbooks/onboard.yml for 1, 5 and 20 members.

One throwaway Debian 13 target (benchmarks/perf_target.py; container mlflow-bench-perf-onboard)
with sshd, Docker and the MLflow image; the repo's site.yml deploys MLflow on it first (not
timed). Every member's PC is this controller (ansible_connection local, as root), each member
with their own ssh_config_path, host alias and free local port, the controller's generated key
as identity_file and public_key, a shared UserKnownHostsFile, and server account benchNN
(mlflow_team_manage_accounts: true), the way extensions/molecule/tunnel/molecule.yml
describes alice. mlflow_team_server_address is the target's bridge address.

Members are hosts of their own (onboard.yml's first play adds them) and run in parallel, up to
ansible.cfg's forks (20). Each --repeat round, team sizes in a rotated order, timed as the wall
time of ansible-playbook (warm only in the first --warm-rounds rounds):
  cold  the members' server accounts and their ssh config dirs removed first: accounts and keys
        made, Host blocks written, each member's tunnel opened once and MLflow checked through it;
  warm  the same again, nothing to change (accounts, keys and blocks in place; tunnels still
        opened and checked).
The table gives seconds (median, min..max), the ratio to 1 member, seconds per extra member,
the split between the server play (accounts) and the PCs' play (config, tunnel, check), and the
CPU seconds ansible-playbook and the modules it ran on this controller used: the members' PCs
share this controller's cores, so that CPU divided by the cores is a floor for the wall time.

Run: .venv/bin/python benchmarks/onboard.py [--sizes 1,5,20] [--repeat 3] [--warm-rounds 1] [--keep]
Some 15 minutes by default on a busy 2-core host.
Needs the mlops-target:trixie and mlops/mlflow:3.17.2 images (scripts/images.sh), Docker, ssh.
"""

import argparse
import json
import os
import re
import shutil
import statistics

from perf_target import REPO, Target, _seconds, fmt, free_port, json_out_option, log, md_table, recap, task_rows

USER_PREFIX = "bench"
# The members' PCs are this controller, so their modules share its cores: a run cannot take less
# wall time than the CPU it needs divided by them.
CORES = os.cpu_count() or 1


def team(target, size, ports):
    public_key = (target.workdir / "id_ed25519.pub").read_text().strip()
    members = []
    for index in range(size):
        home = target.workdir / "members" / f"m{index:02d}"
        members.append(
            {
                "name": f"member{index:02d}",
                "pc": "localhost",
                "local_user": "root",
                "server_user": f"{USER_PREFIX}{index:02d}",
                "public_key": public_key,
                "host_alias": f"mlflowbench{index:02d}",
                "local_port": ports[index],
                "identity_file": str(target.key),
                "ssh_config_path": str(home / ".ssh/config"),
                "ssh_options": {"UserKnownHostsFile": str(target.known_hosts)},
            }
        )
    return {
        "mlflow_team": members,
        "mlflow_team_manage_accounts": True,
        "mlflow_team_server_address": target.address,
    }


def reset_members(target, size):
    """Remove the members' server accounts (and homes) and their ssh config dirs on the controller."""
    names = " ".join(f"{USER_PREFIX}{index:02d}" for index in range(size))
    target.exec(f"for u in {names}; do id $u >/dev/null 2>&1 && userdel -r $u >/dev/null 2>&1; done; true")
    shutil.rmtree(target.workdir / "members", ignore_errors=True)


def play_split(document):
    """Seconds of the server play (accounts) and of the PCs' play (config, tunnel, check)."""
    split = {}
    for play in document.get("plays", []):
        name = play["play"]["name"]
        duration = play["play"]["duration"]
        if duration.get("end"):
            split[name] = _seconds(duration["end"]) - _seconds(duration["start"])
    server = next((v for k, v in split.items() if "account" in k.lower()), 0.0)
    pcs = next((v for k, v in split.items() if "ssh config" in k.lower()), 0.0)
    return server, pcs


def costliest(document, top=10):
    """Wall seconds per task (names, aliases and ports normalised), and how many host results it had.

    Members are hosts of their own and run in parallel: a task's wall time (its duration in the
    json callback) is counted once, however many members it served; a task that runs once per
    member in turn (the server play's loops, or members on one PC before) adds up over its entries."""
    totals, count, actions = {}, {}, {}
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            results = [result for result in task.get("hosts", {}).values() if not result.get("skipped")]
            if not results:
                continue
            name = re.sub(r"member\d+", "<member>", task["task"]["name"])
            name = re.sub(rf"mlflowbench\d+|{USER_PREFIX}\d+", "<alias>", name)
            name = re.sub(r":\d{4,5}\b", ":<port>", name)
            duration = task["task"].get("duration", {})
            seconds = _seconds(duration["end"]) - _seconds(duration["start"]) if duration.get("end") else 0.0
            totals[name] = totals.get(name, 0.0) + seconds
            count[name] = count.get(name, 0) + sum(len(result.get("results", [])) or 1 for result in results)
            actions[name] = results[0].get("action", "")
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [(name, actions[name], count[name], f"{seconds:.1f}") for name, seconds in ranked]


def failures(document):
    """The failed or unreachable results of a run (host, task, message): the recap alone does not say why."""
    lines = []
    for play in (document or {}).get("plays", []):
        for task in play.get("tasks", []):
            for host, result in task.get("hosts", {}).items():
                if result.get("failed") or result.get("unreachable"):
                    message = str(result.get("msg") or result.get("stderr") or "")[:500]
                    lines.append(f"  {host}: {task['task']['name']}: {message}")
    return "\n".join(lines) or "  (no failed task result in the json document)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,5,20", help="team sizes (the first is the ratio's base)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median taken)")
    parser.add_argument(
        "--warm-rounds", type=int, default=1, help="rounds that also time a warm re-run of each size (default 1)"
    )
    parser.add_argument("--name", default="mlflow-bench-perf-onboard", help="the target container's name")
    json_out_option(parser, "onboard")
    parser.add_argument("--keep", action="store_true", help="leave the target container running")
    args = parser.parse_args()
    sizes = [int(value) for value in args.sizes.split(",")]

    target = Target(args.name)
    largest_cold = None
    results = []
    problems = []
    try:
        target.start()
        deploy = target.workdir / "server.yml"
        deploy.write_text(f"- ansible.builtin.import_playbook: {REPO / 'site.yml'}\n")
        run = target.playbook(deploy)
        if run["rc"] != 0:
            raise SystemExit(f"site.yml failed:\n{run['stdout'][-3000:]}\n{run['stderr'][-2000:]}")
        ports = []
        while len(ports) < max(sizes):
            port = free_port()
            if port not in ports and port != 5000:
                ports.append(port)
        playbook = REPO / "playbooks/onboard.yml"
        for repeat in range(args.repeat):
            shift = repeat % len(sizes)
            for size in sizes[shift:] + sizes[:shift]:
                reset_members(target, max(sizes))
                variables = team(target, size, ports)
                for phase in ["cold", "warm"] if repeat < args.warm_rounds else ["cold"]:
                    run = target.playbook(playbook, extra_vars=variables)
                    if run["rc"] != 0 or run["json"] is None:
                        raise SystemExit(
                            f"onboard {size} {phase} failed:\n{failures(run['json'])}\n"
                            f"{run['stdout'][-4000:]}\n{run['stderr'][-2000:]}"
                        )
                    changed = {host: stat["changed"] for host, stat in recap(run["json"]).items()}
                    if phase == "warm" and any(changed.values()):
                        names = sorted({row["task"] for row in task_rows(run["json"]) if row["changed"]})
                        problems.append(f"warm onboard of {size} changed {changed}: {names}")
                    configs = list((target.workdir / "members").glob("m*/.ssh/config"))
                    if len(configs) != size:
                        problems.append(f"{size} members but {len(configs)} ssh configs after the {phase} run")
                    server, pcs = play_split(run["json"])
                    if phase == "cold" and size == max(sizes):
                        largest_cold = run["json"]
                    results.append(
                        {
                            "size": size,
                            "phase": phase,
                            "round": repeat + 1,
                            "seconds": run["seconds"],
                            "cpu_s": run["cpu_s"],
                            "server_play": server,
                            "pcs_play": pcs,
                            "changed": changed,
                            "tasks": sum(1 for row in task_rows(run["json"]) if not row["skipped"]),
                        }
                    )
                    log(f"round {repeat + 1}: {size:>2} members {phase} {run['seconds']:.1f}s changed={changed}")
        reset_members(target, max(sizes))
    finally:
        if not args.keep:
            target.remove()
            shutil.rmtree(target.workdir, ignore_errors=True)

    print(f"## Onboarding (playbooks/onboard.yml): seconds, median (min..max) of {args.repeat}\n")
    rows = []
    phases = [phase for phase in ("cold", "warm") if any(r["phase"] == phase for r in results)]
    for phase in phases:
        base = statistics.median(r["seconds"] for r in results if r["size"] == sizes[0] and r["phase"] == phase)
        for size in sizes:
            mine = [r for r in results if r["size"] == size and r["phase"] == phase]
            seconds = [r["seconds"] for r in mine]
            median = statistics.median(seconds)
            per_member = f"{(median - base) / (size - sizes[0]):.1f}" if size != sizes[0] else "-"
            rows.append(
                [
                    phase,
                    size,
                    fmt(seconds),
                    f"{median / base:.2f}",
                    per_member,
                    fmt([r["server_play"] for r in mine]),
                    fmt([r["pcs_play"] for r in mine]),
                    fmt([r["cpu_s"] for r in mine]),
                    f"{statistics.median(r['cpu_s'] for r in mine) / CORES:.1f}",
                    mine[-1]["tasks"],
                ]
            )
    print(
        md_table(
            [
                "run",
                "members",
                "seconds",
                f"ratio to {sizes[0]}",
                "s per extra member",
                "server play (accounts)",
                "PCs play (config, tunnel, check)",
                "controller CPU s",
                f"CPU s / {CORES} cores",
                "task results",
            ],
            rows,
        )
    )
    if largest_cold:
        print(
            f"\n## Where the time goes: the 10 costliest tasks of the last cold run of {max(sizes)} members "
            "(wall seconds; members run in parallel)\n"
        )
        print(
            md_table(
                ["task (member names normalised)", "action", "results (loop items)", "wall s"], costliest(largest_cold)
            )
        )
    if problems:
        print("\n## Problems\n")
        for problem in problems:
            print(f"- {problem}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

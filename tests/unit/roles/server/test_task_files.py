# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The server role's task files as a reader meets them. tasks/main.yml is a table of contents:
at most 40 lines, every step of it an import or include of a file. No path of includes is deeper
than two, from any file (every task file may be an entry: tasks/main.yml, the playbooks'
tasks_from, the tests'), failure paths included: a reader finds any step within two files of where
they start. The runtime seam (tasks/runtime/) includes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parents[4] / "roles" / "server" / "tasks"
INCLUDE = re.compile(r"^\s*(?:-\s+)?ansible\.builtin\.(?:include|import)_tasks:(.*)$", re.M)
MAX_DEPTH = 2
MAX_MAIN_LINES = 40


def include_graph(tasks_dir):
    """{file: [files it includes or imports]}, paths relative to the role's tasks/ folder."""
    graph = {}
    for path in sorted(tasks_dir.rglob("*.yml")):
        targets = [target.strip().strip("'\"") for target in INCLUDE.findall(path.read_text())]
        # A file: option on its own line, or a templated name, would hide the depth from this probe.
        assert all(target and "{{" not in target for target in targets), f"{path}: {targets}"
        graph[path.relative_to(tasks_dir).as_posix()] = targets
    return graph


def deepest(graph):
    """The longest chain of includes, as a list of files (a cycle would be reported, not followed)."""

    def walk(name, seen):
        longest = [name]
        for target in graph.get(name, []):
            assert target in graph, f"{name} includes {target}, which does not exist"
            assert target not in seen, f"include cycle: {' -> '.join([*seen, target])}"
            chain = [name, *walk(target, [*seen, target])]
            longest = max(longest, chain, key=len)
        return longest

    return max((walk(name, [name]) for name in graph), key=len)


def test_no_include_path_is_deeper_than_two():
    chain = deepest(include_graph(TASKS))
    assert len(chain) - 1 <= MAX_DEPTH, " -> ".join(chain)


def test_the_runtime_seam_includes_nothing():
    graph = include_graph(TASKS)
    runtime = {name: targets for name, targets in graph.items() if name.startswith("runtime/")}
    assert runtime and all(targets == [] for targets in runtime.values()), runtime


def test_the_probe_finds_a_chain_three_deep(tmp_path):
    # The probe's positive control: three files deep is found and refused.
    (tmp_path / "runtime").mkdir()
    (tmp_path / "main.yml").write_text("- name: A\n  ansible.builtin.include_tasks: upgrade.yml\n")
    (tmp_path / "upgrade.yml").write_text(
        "- name: B\n  block:\n    - ansible.builtin.import_tasks: runtime/start.yml\n"
    )
    (tmp_path / "runtime" / "start.yml").write_text("- name: C\n  ansible.builtin.include_tasks: runtime/stack.yml\n")
    (tmp_path / "runtime" / "stack.yml").write_text("- name: D\n  ansible.builtin.debug:\n")
    assert deepest(include_graph(tmp_path)) == ["main.yml", "upgrade.yml", "runtime/start.yml", "runtime/stack.yml"]


def steps(tasks):
    """Every task of a task list, blocks opened (their rescue and always sections too)."""
    for task in tasks:
        inner = [*task.get("block", []), *task.get("rescue", []), *task.get("always", [])]
        yield from steps(inner) if inner else [task]


def test_main_is_a_table_of_contents():
    text = (TASKS / "main.yml").read_text()
    assert len(text.splitlines()) <= MAX_MAIN_LINES
    found = list(steps(yaml.safe_load(text)))
    files = {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}
    doing = [task["name"] for task in found if not files & set(task)]
    assert found and doing == []

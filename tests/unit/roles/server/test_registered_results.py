# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A registered result is read in the file that registers it (and in the templates that file
renders; a file that registers the same name reads its own). Values that cross files come from
the one host read (host.yml's __mlflow_server_host) or from the return of one of the collection's
own modules, documented in its RETURN: the image read (image.yml's __mlflow_server_image)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[4] / "roles" / "server"
HOST_READ = "__mlflow_server_host"
# The results that may cross files, and the one module each is the return of.
MODULE_READS = {HOST_READ: "mlops.mlflow.mlflow_server_info", "__mlflow_server_image": "mlops.mlflow.mlflow_image"}


def role_files():
    return sorted(path for path in ROLE.rglob("*") if path.is_file() and path.suffix in {".yml", ".j2"})


def crossings(files, root=ROLE):
    """(result, registering file, reading file) for every read of a result outside its file."""
    texts = {path: path.read_text() for path in files}
    registers = {path: set(re.findall(r"^\s*register: (\w+)\s*$", text, re.M)) for path, text in texts.items()}
    found = set()
    for path, text in texts.items():
        rendered = set(re.findall(r"^\s*src: ([\w.-]+\.j2)\s*$", text, re.M))
        for name in registers[path] - set(MODULE_READS):
            reads = re.compile(rf"(?<!\w){name}(?!\w)")
            for other, other_text in texts.items():
                # A file that registers the same name reads its own result.
                mine = other == path or other.name in rendered or name in registers[other]
                if not mine and reads.search(other_text):
                    found.add((name, path.relative_to(root).as_posix(), other.relative_to(root).as_posix()))
    return found


def test_registered_results_stay_in_their_file():
    assert crossings(role_files()) == set()


def tasks(items):
    """Every task in a task list, blocks opened."""
    for item in items or []:
        yield item
        for part in ("block", "rescue", "always"):
            yield from tasks(item.get(part))


def test_a_result_that_crosses_files_is_one_module_run():
    """Each is registered once in the role, by its module, so every reader reads that module's RETURN."""
    registered = {name: [] for name in MODULE_READS}
    for path in (ROLE / "tasks").rglob("*.yml"):
        for task in tasks(yaml.safe_load(path.read_text())):
            if task.get("register") in registered:
                registered[task["register"]].append(next(key for key in task if "." in key))
    assert registered == {name: [module] for name, module in MODULE_READS.items()}


@pytest.mark.parametrize(
    ("reader", "crosses"),
    [
        ("- debug: {msg: '{{ __mlflow_server_probe.status }}'}\n", True),
        ("- debug: {msg: '{{ __mlflow_server_probe_other }}'}\n", False),
        ("- debug: {msg: '{{ __mlflow_server_host.files }}'}\n", False),
    ],
)
def test_the_probe_finds_a_crossing(tmp_path, reader, crosses):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "a.yml").write_text(
        "- uri: {url: x}\n  register: __mlflow_server_probe\n- stat: {path: x}\n  register: __mlflow_server_host\n"
    )
    (tmp_path / "tasks" / "b.yml").write_text(reader)
    found = crossings(sorted((tmp_path / "tasks").glob("*.yml")), tmp_path)
    assert bool(found) is crosses, found

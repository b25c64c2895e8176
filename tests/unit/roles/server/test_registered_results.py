# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A registered result is read in the file that registers it (and in the templates that file
renders; a file that registers the same name reads its own). Values that cross files come from
the one host read (host.yml's __mlflow_server_host). The crossings still left are listed here by
name, so that none is added and each one removed is struck off."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROLE = Path(__file__).resolve().parents[4] / "roles" / "server"
HOST_READ = "__mlflow_server_host"
# (result, file that registers it, file that reads it): to go, with the seams of the role.
STILL_CROSSING = {
    ("__mlflow_server_admin_record", "tasks/secrets.yml", "vars/main/main.yml"),
    ("__mlflow_server_auth_ini", "tasks/secrets.yml", "tasks/runtime/start.yml"),
    ("__mlflow_server_image_facts_run", "tasks/image_facts.yml", "vars/main/main.yml"),
    ("__mlflow_server_image_found", "tasks/image.yml", "vars/main/main.yml"),
    ("__mlflow_server_image_provided", "tasks/image.yml", "vars/main/main.yml"),
    ("__mlflow_server_kek_next", "tasks/keys.yml", "tasks/rekey.yml"),
    ("__mlflow_server_rekeyed", "tasks/rekey.yml", "tasks/runtime/start.yml"),
    ("__mlflow_server_store_pg", "tasks/upgrade.yml", "vars/main/main.yml"),
}


def role_files():
    return sorted(path for path in ROLE.rglob("*") if path.is_file() and path.suffix in {".yml", ".j2"})


def crossings(files, root=ROLE):
    """(result, registering file, reading file) for every read of a result outside its file."""
    texts = {path: path.read_text() for path in files}
    registers = {path: set(re.findall(r"^\s*register: (\w+)\s*$", text, re.M)) for path, text in texts.items()}
    found = set()
    for path, text in texts.items():
        rendered = set(re.findall(r"^\s*src: ([\w.-]+\.j2)\s*$", text, re.M))
        for name in registers[path] - {HOST_READ}:
            reads = re.compile(rf"(?<!\w){name}(?!\w)")
            for other, other_text in texts.items():
                # A file that registers the same name reads its own result.
                mine = other == path or other.name in rendered or name in registers[other]
                if not mine and reads.search(other_text):
                    found.add((name, path.relative_to(root).as_posix(), other.relative_to(root).as_posix()))
    return found


def test_registered_results_stay_in_their_file():
    assert crossings(role_files()) == STILL_CROSSING


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

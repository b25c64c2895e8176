# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The compaction script of playbooks/compact.yml (roles/server/files/mlflow_compact.py) on real
SQLite files: it gives free pages back in place and refuses a damaged database."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "server" / "files" / "mlflow_compact.py"


def run(action, folder):
    command = [sys.executable, str(SCRIPT), action, str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def with_free_pages(path):
    """A database whose deleted rows left free pages, as gc and the trace retention do."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE spans (id INTEGER PRIMARY KEY, body TEXT)")
    connection.executemany("INSERT INTO spans (body) VALUES (?)", [("x" * 4000,)] * 500)
    connection.execute("CREATE TABLE runs (id TEXT)")
    connection.execute("INSERT INTO runs VALUES ('kept')")
    connection.commit()
    connection.execute("DELETE FROM spans")
    connection.commit()
    connection.close()
    os.chmod(path, 0o666)


def test_vacuum_gives_the_free_pages_back_in_place(tmp_path):
    database = tmp_path / "mlflow.db"
    with_free_pages(database)
    code, out, err = run("measure", tmp_path)
    before = json.loads(out)["databases"]["mlflow.db"]
    assert code == 0 and before["free_pages"] > 400, err
    inode = database.stat().st_ino

    code, out, err = run("vacuum", tmp_path)
    assert code == 0, err
    result = json.loads(out)
    after = result["databases"]["mlflow.db"]
    assert result["vacuumed"] == ["mlflow.db"]
    assert after["free_pages"] == 0 and after["bytes"] < before["bytes"] / 10
    assert database.stat().st_ino == inode and oct(database.stat().st_mode & 0o777) == "0o666"
    assert sqlite3.connect(database).execute("SELECT id FROM runs").fetchall() == [("kept",)]
    # Nothing left to give back: nothing is rewritten.
    assert json.loads(run("vacuum", tmp_path)[1])["vacuumed"] == []


def test_a_damaged_database_is_refused_and_left_as_it_is(tmp_path):
    database = tmp_path / "mlflow.db"
    with_free_pages(database)
    connection = sqlite3.connect(database)
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    connection.close()
    data = bytearray(database.read_bytes())
    # Scribble over the runs table's page, keeping the file's header readable.
    start = (root - 1) * page_size
    data[start : start + page_size] = b"\xff" * page_size
    database.write_bytes(bytes(data))
    code, _out, err = run("vacuum", tmp_path)
    assert code != 0 and "fails its integrity check, left as it is" in err, err
    assert database.read_bytes() == bytes(data)

# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The store the store modules' tests run on, made of real SQLite files."""

from __future__ import annotations

import sqlite3

import pytest


@pytest.fixture
def store(tmp_path):
    """A small store: db/mlflow.db with an alembic revision and two active runs, one artifact."""
    path = tmp_path / "store"
    (path / "mlruns" / "1" / "r1" / "artifacts").mkdir(parents=True)
    (path / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").write_bytes(b"\x80\x04model")
    (path / "db").mkdir()
    conn = sqlite3.connect(path / "db" / "mlflow.db")
    with conn:
        conn.execute("CREATE TABLE alembic_version (version_num TEXT)")
        conn.execute("INSERT INTO alembic_version VALUES ('abc123')")
        conn.execute("CREATE TABLE experiments (experiment_id INTEGER)")
        conn.execute("CREATE TABLE runs (run_uuid TEXT, lifecycle_stage TEXT)")
        conn.executemany("INSERT INTO runs VALUES (?, 'active')", [("r1",), ("r2",)])
    conn.close()
    return path

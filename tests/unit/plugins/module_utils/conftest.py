# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The stores the store tests run on: one served by MLflow (SQLite), and one on PostgreSQL and S3."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils import mlflow_s3

# ansible-test runs each test in a fork of its worker, so a session fixture is made again in every
# test. The template store is made once per worker instead, in a folder the worker names here
# (forks inherit the environment) and removes at its end.
TEMPLATE_DIR = "MLOPS_MLFLOW_UNIT_TEMPLATE"


def pytest_configure(config):
    os.environ[TEMPLATE_DIR] = tempfile.mkdtemp(prefix="mlflow-unit-template-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.pop(TEMPLATE_DIR, ""), ignore_errors=True)


@pytest.fixture
def template():
    """A store served by MLflow: 1 experiment (+ Default), 3 runs (1 deleted), metrics, params, tags,
    2 artifact files, a basic_auth.db with 2 users, the databases in db/. Made once per worker; copy it, never
    change it."""
    root = Path(os.environ[TEMPLATE_DIR]) / "store"
    if not root.is_dir():
        build = root.with_name(f"build-{os.getpid()}")
        _make_template(build)
        build.rename(root)
    return root


def _make_template(root):
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    (root / "db").mkdir(parents=True)
    tracking = SqlAlchemyStore(f"sqlite:///{root}/db/mlflow.db", str(root / "mlruns"))
    experiment = tracking.create_experiment("unit")
    now = int(time.time() * 1000)
    runs = [tracking.create_run(experiment, "alice", now, [], f"run-{i}").info.run_id for i in range(3)]
    for run_id in runs:
        tracking.log_batch(
            run_id, [Metric("loss", 0.5, now, step) for step in range(4)], [Param("lr", "0.1")], [RunTag("team", "a")]
        )
    tracking.delete_run(runs[2])
    tracking.engine.dispose()
    (root / "mlruns" / "1" / runs[0] / "artifacts").mkdir(parents=True)
    (root / "mlruns" / "1" / runs[0] / "artifacts" / "model.bin").write_bytes(os.urandom(4096))
    (root / "mlruns" / "1" / runs[0] / "artifacts" / "notes.txt").write_text("notes\n")
    auth = AuthStore()
    auth.init_db(f"sqlite:///{root}/db/basic_auth.db")
    auth.create_user("alice", "alice-password-1")
    auth.engine.dispose()
    (root / "docker-compose.yml").write_text('services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2"\n')


@pytest.fixture
def served(template, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


@pytest.fixture
def legacy(served):
    """The served store as releases before 0.5.0 laid it out: the databases at its top."""
    for name in os.listdir(served / "db"):
        os.rename(served / "db" / name, served / name)
    os.rmdir(served / "db")
    return served


@pytest.fixture
def objects(fake_s3, tmp_path):
    """The fake bucket with three artifacts, as (client, bucket) and their sha256 by key."""
    _server, client, _credentials = fake_s3
    source = tmp_path / "artifacts"
    digests = {}
    for key, data in {
        "1/r1/artifacts/model.bin": os.urandom(5000),
        "1/r2/artifacts/a.txt": b"a",
        "2/r3/x": b"",
    }.items():
        (source / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).write_bytes(data)
        digests[key] = mlflow_s3.sha256_file(source / key)
    mlflow_s3.import_tree(client, "mlflow", str(source))
    return (client, "mlflow"), digests


@pytest.fixture
def store_dir(tmp_path):
    path = tmp_path / "store"
    (path / "postgres").mkdir(parents=True)
    (path / "postgres" / "PG_VERSION").write_text("17\n")
    (path / "s3").mkdir()
    (path / "docker-compose.yml").write_text(
        'services:\n  mlflow-server:\n    image: "mlops/mlflow:3.17.2-full"\n  postgres:\n    image: "x"\n  s3:\n'
    )
    return path

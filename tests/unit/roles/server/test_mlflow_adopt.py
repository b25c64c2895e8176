# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The adoption of experiments into lab groups (files/mlflow_adopt.py, run by tasks/adopt.yml) against
a real MLflow 3 (this venv's): experiments logged before workspaces were on move into a group's
workspace, and every artifact downloads through the server there with the bytes it had. What cannot
be served from another workspace is refused, and a failed move puts the folders back."""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.mlflow_server import as_admin, running_mlflow

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "server" / "files" / "mlflow_adopt.py"
# As the admin: log runs with artifacts ("log" workspace experiment...), make workspaces ("make"
# name...), or print the sha256 of every artifact of every run of the experiments named,
# downloaded through the server, by experiment ("fetch" workspace experiment...).
CLIENT = """
import hashlib, json, os, sys, tempfile, mlflow
action, *args = sys.argv[1:]
client = mlflow.MlflowClient()
if action == "make":
    for name in args:
        mlflow.create_workspace(name)
    raise SystemExit
workspace, *experiments = args
if workspace != "-":
    mlflow.set_workspace(workspace)
sums = {}
for name in experiments:
    if action == "log":
        experiment = mlflow.set_experiment(name).experiment_id
        for number in range(2):
            with mlflow.start_run(experiment_id=experiment), tempfile.TemporaryDirectory() as scratch:
                os.makedirs(os.path.join(scratch, "deep"))
                for path in ("weights.bin", "deep/notes.txt"):
                    with open(os.path.join(scratch, path), "wb") as stream:
                        stream.write(os.urandom(2048) + name.encode())
                mlflow.log_artifacts(scratch)
    else:
        experiment = client.get_experiment_by_name(name).experiment_id
        sums[name] = {}
        for run in client.search_runs([experiment]):
            with tempfile.TemporaryDirectory() as scratch:
                root = client.download_artifacts(run.info.run_id, "", scratch)
                for folder, _dirs, files in os.walk(root):
                    for file in files:
                        path = os.path.join(folder, file)
                        relative = os.path.relpath(path, root)
                        with open(path, "rb") as stream:
                            sums[name][f"{run.info.run_id}/{relative}"] = hashlib.sha256(stream.read()).hexdigest()
print(json.dumps(sums))
"""


def client(url, *argv):
    """CLIENT as the admin; what it printed."""
    answer = as_admin(url, "-c", CLIENT, *argv)
    assert answer.returncode == 0, answer.stderr[-2000:]
    return json.loads(answer.stdout.strip().splitlines()[-1] or "{}") if argv[0] != "make" else None


def adopt(where, action, wanted):
    env = {
        **os.environ,
        "MLFLOW_ADOPT_MLRUNS": str(where / "mlruns"),
        "TMPDIR": str(where),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    argv = [sys.executable, str(SCRIPT), action, f"sqlite:///{where}/mlflow.db", json.dumps(wanted)]
    answer = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert answer.returncode == 0, answer.stdout + answer.stderr[-2000:]
    return json.loads(answer.stdout.strip().splitlines()[-1])


def on_disk(mlruns):
    """Every file under mlruns/, by its path there, with its sha256."""
    return {
        str(path.relative_to(mlruns)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in mlruns.rglob("*")
        if path.is_file()
    }


def workspace_of(where, name):
    with sqlite3.connect(where / "mlflow.db") as database:
        return database.execute("SELECT workspace FROM experiments WHERE name = ?", (name,)).fetchone()[0]


def build_lab_store(where):
    """A store of before the groups (resnet, bert and keep, with artifacts), then workspaces
    vision and nlp made with workspaces on, and in default an experiment made after that (late).
    Returns what each experiment's artifacts were, as the server gave them before any move."""
    with running_mlflow(where, workspaces=False) as url:
        client(url, "log", "-", "resnet", "bert", "keep")
        before = client(url, "fetch", "-", "resnet", "bert", "keep")
    with running_mlflow(where, workspaces=True) as url:
        client(url, "make", "vision", "nlp")
        client(url, "log", "default", "late")
    return before


# Where the lab store is built once for every test of this file. Made at import, in the process that
# collects the tests: ansible-test runs each test in a process forked from it, whose own temporary
# folders (tmp_path_factory's too) are its alone. Removed when that process ends.
LAB = Path(tempfile.mkdtemp(prefix="mlops-adopt-lab-"))
LAB_OWNER = os.getpid()


@atexit.register
def remove_lab():
    if os.getpid() == LAB_OWNER:
        shutil.rmtree(LAB, ignore_errors=True)


@pytest.fixture
def lab_store(tmp_path):
    """A copy, in tmp_path, of the lab store (built by the first test that asks)."""
    built = LAB / "store"
    with open(LAB / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "before.json").exists():
            shutil.rmtree(built, ignore_errors=True)
            built.mkdir()
            before = build_lab_store(built)
            (built / "before.json").write_text(json.dumps(before))
    store = tmp_path / "store"
    shutil.copytree(built, store, symlinks=True)
    return store, json.loads((store / "before.json").read_text())


def test_adopted_experiments_are_served_from_their_group_with_every_byte(lab_store):
    store, before = lab_store
    assert all(len(sums) == 4 for sums in before.values()), before
    files = on_disk(store / "mlruns")
    wanted = {"vision": ["resnet"], "nlp": ["bert"]}

    planned = adopt(store, "plan", wanted)
    assert planned["problems"] == [], planned
    assert [(m["workspace"], m["name"], m["runs"], m["files"]) for m in planned["moves"]] == [
        ("nlp", "bert", 2, 4),
        ("vision", "resnet", 2, 4),
    ]
    assert "would be moved from 'default' to 'vision'" in " ".join(planned["dry_run"]), planned
    # The control: a plan changes nothing.
    assert on_disk(store / "mlruns") == files and workspace_of(store, "resnet") == "default"

    moved = adopt(store, "move", wanted)
    assert moved["problems"] == [] and len(moved["moved"]) == 2, moved
    ids = {entry["name"]: entry["id"] for entry in moved["moved"]}
    # Nothing copied or lost: the same files, each under its group's folder.
    assert sorted(on_disk(store / "mlruns").values()) == sorted(files.values())
    assert not (store / "mlruns" / ids["resnet"]).exists()
    assert (store / "mlruns" / "workspaces" / "vision" / ids["resnet"]).is_dir()

    with running_mlflow(store, workspaces=True) as url:
        assert client(url, "fetch", "vision", "resnet") == {"resnet": before["resnet"]}
        assert client(url, "fetch", "nlp", "bert") == {"bert": before["bert"]}
        # What stayed in default is served as before.
        assert client(url, "fetch", "default", "keep") == {"keep": before["keep"]}

    # A second run has nothing left to do.
    again = adopt(store, "plan", wanted)
    assert again["moves"] == [] and [d["name"] for d in again["done"]] == ["bert", "resnet"], again


def test_what_cannot_be_served_from_a_group_is_refused_before_any_change(lab_store):
    store, _before = lab_store
    files = on_disk(store / "mlruns")
    keep_id = adopt(store, "plan", {"vision": ["keep"]})["moves"][0]["id"]
    (store / "mlruns" / "workspaces" / "nlp").mkdir(parents=True, exist_ok=True)
    (store / "mlruns" / "workspaces" / "nlp" / keep_id).mkdir()
    cases = {
        "no experiment typo in the workspace default": {"vision": ["typo"]},
        "the workspace audio does not exist": {"audio": ["resnet"]},
        "late keeps its artifacts at mlflow-artifacts:/workspaces/default/": {"vision": ["late"]},
        "is the experiment every workspace starts with": {"vision": ["Default"]},
        "resnet is listed for both nlp and vision": {"vision": ["resnet"], "nlp": ["resnet"]},
        f"mlruns/workspaces/nlp/{keep_id} exists already": {"nlp": ["keep"]},
    }
    for expected, wanted in cases.items():
        refused = adopt(store, "move", wanted)
        assert any(expected in problem for problem in refused["problems"]), (expected, refused)
        assert "moved" not in refused
    (store / "mlruns" / "workspaces" / "nlp" / keep_id).rmdir()
    assert on_disk(store / "mlruns") == files
    assert {workspace_of(store, name) for name in ("resnet", "keep", "late")} == {"default"}


def test_a_failed_move_puts_the_folders_back(lab_store):
    store, _before = lab_store
    files = on_disk(store / "mlruns")
    # A real failure inside move-resources' transaction, after the folders moved.
    with sqlite3.connect(store / "mlflow.db") as database:
        database.execute(
            "CREATE TRIGGER planted BEFORE UPDATE ON experiments BEGIN SELECT RAISE(ABORT, 'planted failure'); END"
        )
    failed = adopt(store, "move", {"vision": ["resnet"]})
    assert any(
        "the move to vision failed, its folders were put back" in p and "planted failure" in p
        for p in failed["problems"]
    ), failed
    assert failed["moved"] == []
    assert on_disk(store / "mlruns") == files
    assert workspace_of(store, "resnet") == "default"

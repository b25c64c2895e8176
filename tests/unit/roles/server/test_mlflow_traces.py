# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The trace retention (files/mlflow_traces.py, run by mlflow-gc.service) with workspaces on: it trims
the traces of every workspace, as the admin, against a real MLflow 3 server (this venv's)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.mlflow_server import as_admin, running_mlflow

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "server" / "files" / "mlflow_traces.py"
# Logs one trace in each workspace named, as the admin, and counts them per workspace.
CLIENT = """
import json, sys, mlflow
action, *workspaces = sys.argv[1:]
counts = {}
for workspace in workspaces:
    mlflow.set_workspace(workspace)
    experiment = mlflow.set_experiment(f"traced-{workspace}").experiment_id
    if action == "log":
        with mlflow.start_span(name="step"):
            pass
    counts[workspace] = len(mlflow.MlflowClient().search_traces(locations=[experiment]))
print(json.dumps(counts))
"""


def test_traces_older_than_the_retention_go_in_every_workspace(tmp_path):
    with running_mlflow(tmp_path) as url:
        for workspace in ("vision", "nlp"):
            answer = as_admin(url, "-c", f"import mlflow; mlflow.create_workspace({workspace!r})")
            assert answer.returncode == 0, answer.stderr[-2000:]
        logged = as_admin(url, "-c", CLIENT, "log", "default", "vision", "nlp")
        assert logged.returncode == 0, logged.stderr[-2000:]
        # The control: each workspace holds its trace (counted once the logging process has sent them).
        held = as_admin(url, "-c", CLIENT, "count", "default", "vision", "nlp")
        assert held.stdout.strip().endswith('{"default": 1, "vision": 1, "nlp": 1}'), held.stdout + held.stderr[-2000:]
        time.sleep(1.5)
        trimmed = as_admin(url, str(SCRIPT), "1s")
        assert trimmed.returncode == 0, trimmed.stdout + trimmed.stderr[-2000:]
        assert "Trace retention: 3 traces deleted." in trimmed.stdout, trimmed.stdout
        left = as_admin(url, "-c", CLIENT, "count", "default", "vision", "nlp")
        assert left.stdout.strip().endswith('{"default": 0, "vision": 0, "nlp": 0}'), left.stdout + left.stderr[-2000:]


@pytest.mark.parametrize("retention", ["", "30x"])
def test_a_retention_it_cannot_read_is_refused(retention):
    answer = subprocess.run([sys.executable, str(SCRIPT), retention], capture_output=True, text=True, check=False)
    assert answer.returncode != 0 and "cannot read the retention" in answer.stderr

# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The trace retention of the gc timer (roles/server/files/mlflow_traces.py) against a real
`mlflow server` and real traces: old traces go with their files, recent ones stay."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "server" / "files" / "mlflow_traces.py"


def log_traces(count, tag, tmp_path):
    """count traces, each with a file where MLflow keeps the trace's data files. MLflow's client
    writes its own there only for some traces (those whose spans did not reach the database
    first), so the test puts one there itself, through the server."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    ids = []
    for step in range(count):
        with mlflow.start_span(name=f"{tag}-{step}") as span:
            span.set_inputs({"prompt": "x" * 512, "step": step})
            ids.append(span.trace_id)
    mlflow.flush_trace_async_logging()
    attachment = tmp_path / "attachment.txt"
    attachment.write_text("trace data\n")
    client = mlflow.MlflowClient()
    for trace in ids:
        location = client.get_trace(trace).info.tags["mlflow.artifactLocation"]
        get_artifact_repository(location).log_artifact(str(attachment))
    return ids


def test_old_traces_go_with_their_files_and_recent_ones_stay(mlflow_server, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    experiment_id = mlflow.set_experiment("retention").experiment_id
    old = log_traces(6, "old", tmp_path)
    # Far apart, so that a slow start of the script (importing mlflow) keeps the recent ones recent.
    time.sleep(20)
    recent = log_traces(3, "recent", tmp_path)
    folder = mlflow_server.directory / "mlruns" / experiment_id / "traces"

    def files(ids):
        return [path for trace in ids for path in (folder / trace).rglob("*") if path.is_file()]

    assert len(files(old)) >= 6, files(old)

    done = subprocess.run(
        [sys.executable, "-", "12s"], stdin=SCRIPT.open(), capture_output=True, text=True, check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Deleted 6 traces older than 12s from experiment {experiment_id}." in done.stdout
    assert "Trace retention: 6 traces deleted." in done.stdout
    client = mlflow.MlflowClient()
    left = {trace.info.trace_id for trace in client.search_traces(locations=[experiment_id], include_spans=False)}
    assert left == set(recent)
    # Their files are gone (MLflow leaves the emptied folders, as gc does for runs).
    assert files(old) == []
    assert len(files(recent)) >= 3

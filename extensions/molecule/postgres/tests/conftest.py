"""Helpers for the postgres tests: the real mlflow client through the shared relay, the users'
playbooks, and readers of the target (PostgreSQL through psql in its container, the bucket
through boto3 in MLflow's).

The test files run in name order on one target: test_1 moves the SQLite server that converge
deployed to PostgreSQL and S3; the later files work on the moved store."""

import base64
import json
import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_client import Writer, pointed_at, relay  # noqa: F401  # pylint: disable=unused-import

# The test files import these from here.
from playbook import PROJECT, run_playbook  # noqa: F401  # pylint: disable=unused-import

TARGET = "mlflow-pg"
STORE = "/opt/mlflow"
BACKUPS = "/var/backups/mlflow"
LOGS = PROJECT / ".cache" / "logs"


def sh(host, command):
    return host.check_output(command)


def psql(host, sql, database="mlflow"):
    """One query's rows in the managed PostgreSQL (peer authentication inside its container)."""
    out = sh(host, f"docker exec mlflow-postgres psql -X -U mlflow -d {database} -At -F '|' -c {json.dumps(sql)}")
    return [line.split("|") for line in out.splitlines()]


BUCKET = """
import json, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow"):
    keys += [item["Key"] for item in page.get("Contents", [])]
print(json.dumps(keys))
"""


def bucket_keys(host):
    """The keys of the bucket, listed by boto3 inside the MLflow container (its endpoint and keys)."""
    encoded = base64.b64encode(BUCKET.encode()).decode()
    script = f"import base64; exec(base64.b64decode('{encoded}'))"
    return json.loads(sh(host, f'docker exec mlflow-server python -c "{script}"'))


def backups(host, label=None):
    names = sh(host, f"ls -1 {BACKUPS} 2>/dev/null || true").split()
    return [f"{BACKUPS}/{n}" for n in sorted(names) if n[:8].isdigit() and (label is None or n.endswith(label))]


def manifest(host, backup):
    return json.loads(host.file(f"{backup}/manifest.json").content_string)


@pytest.fixture
def mlflow(relay, monkeypatch):  # noqa: F811  # the fixture imported above
    # MLflow 3.16+ advertises presigned downloads straight from S3 for an S3 destination; a client
    # behind the tunnel cannot reach the bucket, so it asks for artifacts through MLflow
    # (docs/docsite/rst/guide_scale.rst).
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    return pointed_at(monkeypatch, relay.uri, timeout=60)


@pytest.fixture(scope="session")
def ledger():
    """Every run logged so far, with what it must still hold: {run_id: expected}."""
    return {}


def log_run(mlflow, directory, experiment, index):
    """A run with 50 metric steps in one log_batch, 3 params, 2 tags and 2 artifacts (one in a folder)."""
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    params = {"lr": f"0.0{index}", "layers": str(index + 2), "note": f"ü-{index}"}
    tags = {"team": "vision", "attempt": str(index)}
    metrics = [Metric("loss", 1.0 / (step + 1 + index), 1_700_000_000_000 + step, step) for step in range(50)]
    client.log_batch(run_id, metrics, [Param(k, v) for k, v in params.items()], [RunTag(k, v) for k, v in tags.items()])
    files = {"model.bin": os.urandom(200_000), f"eval/report-{index}.txt": f"run {index}\n".encode()}
    for name, data in files.items():
        path = Path(directory) / uuid.uuid4().hex / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        client.log_artifact(run_id, str(path), artifact_path=str(Path(name).parent) if "/" in name else None)
    client.set_terminated(run_id)
    return run_id, {"params": params, "tags": tags, "loss": [(m.step, m.value) for m in metrics], "files": files}


def assert_run_intact(mlflow, run_id, expected, directory):
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == expected["params"]
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == expected["tags"]
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == expected["loss"]
    for name, data in expected["files"].items():
        fetched = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=str(Path(directory) / uuid.uuid4().hex)
        )
        assert Path(fetched).read_bytes() == data, name

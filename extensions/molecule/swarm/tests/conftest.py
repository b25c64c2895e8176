"""Helpers for the swarm tests: a relay and the real mlflow client per node (each node's loopback,
as its ssh tunnel reaches it), commands on the nodes, and the replicas' containers.

test_1 checks the set as deployed; test_2 runs the job runner on an image with a test-only job,
then the scenario's own settings again; test_3 kills the worker, so it runs last."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_relay import Relay
from playbook import PROJECT

NODES = ("mlflow-swarm-1", "mlflow-swarm-2")
MANAGER, WORKER = NODES
ADMIN = ("admin", "swarm-Admin-secret-9")
LOGS = PROJECT / ".cache" / "logs"


def on(node, command, check=True):
    result = subprocess.run(["docker", "exec", node, "sh", "-c", command], capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, f"{node}: {command}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
    return result.stdout


def site(*args):
    """ansible-playbook playbooks/site.yml on both nodes from the repo root, as the README writes
    it, plus args; returns the run and its whole output."""
    run = subprocess.run(
        ["ansible-playbook", *args, "playbooks/site.yml", "-i", os.environ["MOLECULE_INVENTORY_FILE"]],
        cwd=PROJECT,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8", "ANSIBLE_NOCOLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return run, run.stdout + run.stderr


def replicas(node):
    """Ids of the MLflow replica containers running on a node (none while Swarm replaces one)."""
    return on(node, "docker ps -q -f label=com.docker.swarm.service.name=mlflow_mlflow-server").split()


def replica(node):
    """The id of the MLflow replica's container on a node."""
    [container] = replicas(node)
    return container


def psql(sql):
    out = on(MANAGER, f"docker exec mlflow-postgres psql -X -U mlflow -d mlflow -At -F '|' -c {json.dumps(sql)}")
    return [line.split("|") for line in out.splitlines()]


@pytest.fixture(scope="session")
def relays():
    relays = {node: Relay(node) for node in NODES}
    yield relays
    for relay in relays.values():
        relay.close()


@pytest.fixture(scope="session")
def clients(relays):
    """An MlflowClient per node, logged in as the admin, fetching artifacts through MLflow."""
    import os

    import mlflow

    os.environ.update(
        {
            "MLFLOW_TRACKING_USERNAME": ADMIN[0],
            "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        }
    )
    return {node: mlflow.MlflowClient(tracking_uri=relay.uri) for node, relay in relays.items()}

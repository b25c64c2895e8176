"""The real mlflow client on the controller, relayed to MLflow on the target's loopback."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_relay import Relay


@pytest.fixture(scope="module")
def tracking_uri(host):
    """http://127.0.0.1:<port>, relayed to MLflow on the target's 127.0.0.1:500."""
    relay = Relay(host.backend.get_hostname())
    yield relay.uri
    relay.close()


@pytest.fixture
def mlflow(tracking_uri, monkeypatch):
    """The real mlflow client, pointed at the target."""
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow

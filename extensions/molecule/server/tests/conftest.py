"""The real mlflow client on the controller, relayed to MLflow on the target's loopback."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_client import pointed_at, relay  # noqa: F401  # pylint: disable=unused-import


@pytest.fixture
def mlflow(relay, monkeypatch):  # noqa: F811  # the fixture imported above
    """The real mlflow client, pointed at the target."""
    return pointed_at(monkeypatch, relay.uri)

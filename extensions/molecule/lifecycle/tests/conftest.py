"""Helpers for the lifecycle tests: the real mlflow client through a relay, the
users' playbooks run with ansible-playbook, and readers of the target's files.

The test files run in name order (test_1_... to test_6_...) on one target, each
starting from the state the previous one left: MLflow 2.22.1 after converge,
3.17.2 from test_1 on."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from mlflow_client import Writer, assert_run_intact, log_run, pointed_at, relay, wait_for  # noqa: F401  # pylint: disable=unused-import

# The test files import these from here.
from playbook import PROJECT, readme_env, run_playbook  # noqa: F401  # pylint: disable=unused-import

STORE = "/opt/mlflow"
BACKUPS = "/var/backups/mlflow"
OLD_VERSION = "2.22.1"
NEW_VERSION = "3.17.2"
BROKEN_IMAGE = "mlops/mlflow:3.17.2-broken-upgrade"
# What the runs before the upgrade ask for: the inventory's 2.22.1, loaded already.
OLD = {"mlflow_server_image": f"mlops/mlflow:{OLD_VERSION}", "mlflow_server_allowed_hosts": []}
# What every run after the upgrade asks for (the inventory still says 2.22.1).
NEW = {
    "mlflow_server_image": f"mlops/mlflow:{NEW_VERSION}",
    "mlflow_server_image_archive": "",
    "mlflow_server_allowed_hosts": ["localhost:*", "127.0.0.1:*"],
}


# --- the target -------------------------------------------------------------


def sh(host, command):
    return host.check_output(command)


def server_version(host):
    return sh(
        host,
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:500/version').read().decode())\"",
    ).strip()


def container(host):
    return json.loads(sh(host, "docker inspect mlflow-server"))[0]


def sqlite(host, db, query):
    """One value from a read-only query, with the target's own Python."""
    script = f"import sqlite3; print(sqlite3.connect('file:{db}?mode=ro', uri=True).execute({query!r}).fetchone()[0])"
    return sh(host, f"python3 -c {json.dumps(script)}").strip()


def sqlite_all(host, db, query):
    script = (
        "import json, sqlite3; "
        f"print(json.dumps(sqlite3.connect('file:{db}?mode=ro', uri=True).execute({query!r}).fetchall()))"
    )
    return json.loads(sh(host, f"python3 -c {json.dumps(script)}"))


def backups(host, label=None):
    """Backup folders, oldest first (names start with a UTC timestamp)."""
    names = sh(host, f"ls -1 {BACKUPS} 2>/dev/null || true").split()
    return [
        f"{BACKUPS}/{name}" for name in sorted(names) if name[:8].isdigit() and (label is None or name.endswith(label))
    ]


def manifest(host, backup):
    return json.loads(host.file(f"{backup}/manifest.json").content_string)


def sha256_tree(host, root):
    """{relative path: sha256} of every file under root."""
    out = sh(host, f"cd {root} && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
    return {line[66:].removeprefix("./"): line[:64] for line in out.splitlines()}


def fingerprint(host):
    """What bad input must not change: the store's files, the backups, the container."""
    return {
        "store": sha256_tree(host, STORE),
        "backups": sh(host, f"ls -1 {BACKUPS} 2>/dev/null || true"),
        "container": sh(host, "docker inspect -f '{{.Id}} {{.Config.Image}} {{.State.StartedAt}}' mlflow-server"),
    }


# --- the real mlflow client -------------------------------------------------


@pytest.fixture
def mlflow(relay, monkeypatch):  # noqa: F811  # the fixture imported above
    return pointed_at(monkeypatch, relay.uri)


@pytest.fixture(scope="session")
def ledger():
    """Every run logged so far that must survive everything that follows."""
    return []

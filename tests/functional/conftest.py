# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Real `mlflow server` processes on 127.0.0.1 for the functional tests."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


if not _importable("ansible_collections.mlops.mlflow.plugins"):
    # Run from a plain checkout (`pytest tests/functional`): expose the tree as
    # ansible_collections.mlops.mlflow through a symlink in a temporary directory.
    _collections = tempfile.mkdtemp(prefix="mlops-collections-")
    atexit.register(shutil.rmtree, _collections, True)
    os.makedirs(os.path.join(_collections, "ansible_collections", "mlops"))
    os.symlink(
        str(Path(__file__).resolve().parents[2]), os.path.join(_collections, "ansible_collections", "mlops", "mlflow")
    )
    sys.path.insert(0, _collections)

STARTUP_TIMEOUT = 180  # a cold `mlflow server` takes about 10 s here; CI machines can be slower


def venv_tool(name):
    """The tool installed beside this Python (the venv's bin), else the one on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """One `mlflow server` with a SQLite store and served artifacts under directory."""

    def __init__(self, directory, extra_args=()):
        self.directory = Path(directory)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = self.directory / "server.log"
        command = [
            venv_tool("mlflow"), "server",
            "--backend-store-uri", "sqlite:///%s" % (self.directory / "mlflow.db"),
            "--serve-artifacts", "--artifacts-destination", str(self.directory / "mlruns"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            *extra_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_SERVER_")}
        with open(self.log_path, "wb") as log:
            # Own session, so teardown can stop uvicorn's worker too.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def log_tail(self, lines=30):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout=STARTUP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("mlflow server exited with %s:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail("mlflow server did not answer /health within %s s:\n%s" % (timeout, self.log_tail()))

    def signal_group(self, signum):
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, timeout=30):
        """SIGTERM (uvicorn, job runner and huey consumers), then SIGKILL whatever is left of the group."""
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="session")
def start_mlflow(tmp_path_factory):
    """Factory: start_mlflow(*extra_args) -> MlflowServer (not yet waited for); all are stopped at the end."""
    servers = []

    def start(*extra_args):
        server = MlflowServer(tmp_path_factory.mktemp("mlflow"), extra_args)
        servers.append(server)
        return server

    yield start
    # Stop them all at once: each takes seconds to shut down its job consumers.
    for server in servers:
        server.signal_group(signal.SIGTERM)
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_servers(start_mlflow, tmp_path_factory):
    """Both long-lived servers, started together since each takes about 10 s to come up."""
    servers = {
        "default": start_mlflow(),
        # --allowed-hosts excludes localhost, as a wrong mlflow_server_allowed_hosts would.
        "narrow_hosts": start_mlflow("--allowed-hosts", "example.org:*"),
        # MLflow's own /metrics, as mlflow_server_metrics turns it on (the role's tmpfs is a folder here).
        "metrics": start_mlflow("--expose-prometheus", str(tmp_path_factory.mktemp("prometheus"))),
    }
    for server in servers.values():
        server.wait_ready()
    return servers


@pytest.fixture(scope="session")
def mlflow_server(mlflow_servers):
    """A server with MLflow's default allowed hosts (localhost and private addresses)."""
    return mlflow_servers["default"]


@pytest.fixture(scope="session")
def mlflow_server_metrics(mlflow_servers):
    """A server that serves its own /metrics (--expose-prometheus)."""
    return mlflow_servers["metrics"]


@pytest.fixture(scope="session")
def mlflow_server_narrow_hosts(mlflow_servers):
    """A server whose --allowed-hosts is example.org:* only."""
    return mlflow_servers["narrow_hosts"]


@pytest.fixture(scope="session")
def ansible_cli():
    return venv_tool("ansible")


@pytest.fixture(scope="session")
def collections_path():
    """The directory that holds ansible_collections/mlops/mlflow, for ansible run as a subprocess."""
    path = os.environ.get("MLOPS_COLLECTIONS_PATH")
    if not path:
        from ansible_collections.mlops.mlflow.plugins.modules import mlflow_health

        # <path>/ansible_collections/mlops/mlflow/plugins/modules/mlflow_health.py, symlinks not resolved.
        path = str(Path(os.path.abspath(mlflow_health.__file__)).parents[5])
    if not (Path(path) / "ansible_collections" / "mlops" / "mlflow" / "galaxy.yml").exists():
        pytest.fail("No ansible_collections/mlops/mlflow under %s; set MLOPS_COLLECTIONS_PATH." % path)
    return path

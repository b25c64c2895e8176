# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A real MLflow 3 server for unit tests: this venv's, with its basic-auth app and workspaces on, on
this machine's loopback, with the users ann, ben and cat (password <name>-Secret-123)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ADMIN = ("admin", "admin-Secret-123")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_mlflow(where, workspaces=True):
    """Start MLflow in the folder where (with workspaces on, or off); yield its URL; stop it. A
    folder may be started again, with workspaces turned on in between."""
    if not shutil.which("mlflow", path=os.path.dirname(sys.executable)):
        pytest.fail("the venv has no mlflow: run scripts/setup.sh")
    ini = where / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{where}/basic_auth.db\nadmin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = true\n"
    )
    # A store started again keeps its users.
    new = not (where / "basic_auth.db").exists()
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # As the server role turns workspaces on: in the environment, which every mlflow command reads.
        "MLFLOW_ENABLE_WORKSPACES": "true" if workspaces else "false",
        # MLflow's lock files (db_init_lock-*) in the test's folder, not in /tmp.
        "TMPDIR": str(where),
    }
    argv = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--app-name", "basic-auth"]
    argv += ["--backend-store-uri", f"sqlite:///{where}/mlflow.db"]
    argv += ["--artifacts-destination", str(where / "mlruns"), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1"]
    log = (where / "server.log").open("w")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=where)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).text == "OK":
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("MLflow did not start: " + Path(where / "server.log").read_text()[-2000:])
    for user in ("ann", "ben", "cat") if new else ():
        answer = requests.post(
            url + "/api/2.0/mlflow/users/create", auth=ADMIN, json={"username": user, "password": f"{user}-Secret-123"}
        )
        assert answer.status_code == 200, answer.text
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def as_admin(url, *argv):
    """python argv... as that server's MLflow admin (its address and login in the environment)."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_USERNAME": ADMIN[0],
        "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
    }
    return subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, check=False, timeout=300)

# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_health against real `mlflow server` processes on 127.0.0.1, in-process and through `ansible`."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_health


def run_module(capsys, **args):
    """Return (exit code, result dict) of one module run, JSON in and JSON out as under Ansible."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            mlflow_health.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def run_ansible(ansible_cli, collections_path, tmp_path, module_args):
    """Run the module with the `ansible` CLI on localhost; return its task result from the json callback."""
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=collections_path,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",  # ad-hoc runs ignore the stdout callback without it
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    command = [ansible_cli, "localhost", "-m", "mlops.mlflow.mlflow_health", "-a", json.dumps(module_args)]
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        output = json.loads(done.stdout)
    except ValueError:
        pytest.fail("ansible printed no JSON (rc %s):\n%s\n%s" % (done.returncode, done.stdout, done.stderr))
    return done.returncode, output["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_real_server_is_healthy_with_its_true_version(mlflow_server, capsys):
    rc, result = run_module(capsys, url=mlflow_server.url, expected_version=mlflow.__version__)
    assert rc == 0, result["msg"]
    assert (result["healthy"], result["status"], result["version"]) == (True, "ok", mlflow.__version__)
    assert all(result["latency_ms"][k] is not None for k in ("health", "version", "api"))
    assert result["changed"] is False


def test_tunnel_host_header_passes_the_default_allowed_hosts(mlflow_server, capsys):
    rc, result = run_module(capsys, url=mlflow_server.url, host_header="localhost:%d" % mlflow_server.port)
    assert rc == 0, result["msg"]
    assert result["status"] == "ok"


def test_allowed_hosts_without_localhost_is_forbidden_host(mlflow_server_narrow_hosts, capsys):
    server = mlflow_server_narrow_hosts
    host = "localhost:%d" % server.port
    rc, result = run_module(capsys, url=server.url, host_header=host)
    assert rc == 1
    assert result["status"] == "forbidden_host"
    assert "'%s'" % host in result["msg"] and "mlflow_server_allowed_hosts" in result["msg"]
    # /health and /version are exempt from the Host check, so they still answered.
    assert result["version"] == mlflow.__version__


def test_health_and_version_alone_miss_the_host_check(mlflow_server_narrow_hosts, capsys):
    server = mlflow_server_narrow_hosts
    rc, result = run_module(capsys, url=server.url, host_header="localhost:%d" % server.port, check_api=False)
    assert rc == 0 and result["healthy"]


def test_allowed_hosts_replaces_the_default_list(mlflow_server_narrow_hosts, capsys):
    # No host_header: urllib sends 127.0.0.1:<port>, which MLflow's default list allows but example.org:* does not.
    rc, result = run_module(capsys, url=mlflow_server_narrow_hosts.url, fail_on_unhealthy=False)
    assert rc == 0
    assert (result["healthy"], result["status"]) == (False, "forbidden_host")


def test_module_waits_for_a_server_that_is_starting(start_mlflow, capsys):
    server = start_mlflow()  # not waited for: the module does the waiting
    rc, result = run_module(capsys, url=server.url, wait_timeout=180, interval=0.5)
    assert rc == 0, result["msg"] + "\n" + server.log_tail()
    assert result["healthy"] and result["version"] == mlflow.__version__
    assert result["attempts"] > 1


def test_ansible_cli_reports_healthy_and_version(mlflow_server, ansible_cli, collections_path, tmp_path):
    rc, task = run_ansible(
        ansible_cli, collections_path, tmp_path, {"url": mlflow_server.url, "host_header": "localhost:5000"}
    )
    assert rc == 0, task.get("msg")
    assert (task["healthy"], task["status"], task["version"]) == (True, "ok", mlflow.__version__)
    assert task["changed"] is False


def test_ansible_cli_fails_with_forbidden_host(mlflow_server_narrow_hosts, ansible_cli, collections_path, tmp_path):
    server = mlflow_server_narrow_hosts
    rc, task = run_ansible(
        ansible_cli, collections_path, tmp_path, {"url": server.url, "host_header": "localhost:5000"}
    )
    assert rc != 0
    assert task["failed"] is True
    assert task["status"] == "forbidden_host"
    assert "--allowed-hosts" in task["msg"]


PASSWORD = "pw-Zq81-never-shown"


@pytest.fixture
def recording_proxy(monkeypatch):
    """A stand-in HTTP proxy on 127.0.0.1 named by every proxy variable; it records what reaches it."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_error(502)

        do_CONNECT = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_port
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("use_proxy", [True, False])
def test_loopback_server_is_reached_directly_despite_proxy_variables(mlflow_server, recording_proxy, capsys, use_proxy):
    rc, result = run_module(capsys, url=mlflow_server.url, use_proxy=use_proxy)
    assert rc == 0, result["msg"]
    assert result["status"] == "ok"
    assert recording_proxy == []


def test_ansible_cli_with_proxy_variables_probes_loopback_directly(
    mlflow_server, recording_proxy, ansible_cli, collections_path, tmp_path
):
    rc, task = run_ansible(ansible_cli, collections_path, tmp_path, {"url": mlflow_server.url})
    assert rc == 0, task.get("msg")
    assert task["status"] == "ok"
    assert recording_proxy == []


def test_ansible_cli_refuses_credentials_in_url_and_never_shows_them(
    mlflow_server, ansible_cli, collections_path, tmp_path
):
    url = "http://monitor:%s@127.0.0.1:%d" % (PASSWORD, mlflow_server.port)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_STDOUT_CALLBACK="json")
    env["ANSIBLE_LOAD_CALLBACK_PLUGINS"] = "1"
    command = [ansible_cli, "localhost", "-vvv", "-m", "mlops.mlflow.mlflow_health", "-a", json.dumps({"url": url})]
    done = subprocess.run(command, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0
    assert "url must not contain credentials" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_ansible_cli_never_shows_url_password(mlflow_server, ansible_cli, collections_path, tmp_path):
    # The server runs without authentication, so it ignores the credentials and answers healthy.
    args = {"url": mlflow_server.url, "url_username": "monitor", "url_password": PASSWORD, "use_proxy": False}
    rc, task = run_ansible(ansible_cli, collections_path, tmp_path, args)
    assert rc == 0, task.get("msg")
    assert task["status"] == "ok"
    assert PASSWORD not in json.dumps(task)


def test_scheme_other_than_http_fails_before_any_request(mlflow_server, capsys):
    rc, result = run_module(capsys, url="ftp://127.0.0.1:%d" % mlflow_server.port)
    assert rc == 1
    assert "url must be an http:// or https:// URL" in result["msg"]

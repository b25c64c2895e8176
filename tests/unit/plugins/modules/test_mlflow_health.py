# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run mlflow_health the way Ansible does (JSON in, JSON out) against real HTTP servers on 127.0.0.1."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import fnmatch
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_health import (
    PERSISTENT_STATUSES,
    STATUSES,
    classify_error,
    host_port,
    wait_until_healthy,
)
from ansible_collections.mlops.mlflow.plugins.modules import mlflow_health

# What MLflow 3.17.2 answers for a Host outside --allowed-hosts (mlflow/server/security_utils.py).
INVALID_HOST_MSG = "Invalid Host header - possible DNS rebinding attack detected"
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
EXPERIMENTS = '{"experiments": [{"experiment_id": "0", "name": "Default"}]}'


def run_module_raw(capsys, **args):
    """Return (exit code, everything the module printed, result dict) of one module run."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            mlflow_health.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err, json.loads(captured.out)


def run_module(capsys, **args):
    """Return (exit code, result dict) of one module run."""
    rc, _output, result = run_module_raw(capsys, **args)
    return rc, result


SERVER_INFO = "/api/3.0/mlflow/server-info"
# The requests of one healthy probe of MLflow 3: health, version, the API read, and whether workspaces are on.
PROBE_REQUESTS = 4


def mlflow_like(
    version="3.17.2", allowed_hosts=None, api=(200, EXPERIMENTS), server_info=(200, '{"workspaces_enabled": false}')
):
    """A respond function that answers like `mlflow server` does."""

    def respond(handler):
        if handler.path == "/health":
            return 200, "OK"
        if handler.path == "/version":
            return 200, version
        if handler.path == SERVER_INFO and server_info is not None:
            return server_info
        host = handler.headers.get("Host", "")
        if allowed_hosts is not None and not any(fnmatch.fnmatch(host, pattern) for pattern in allowed_hosts):
            return 403, INVALID_HOST_MSG
        if handler.path == API_PATH:
            return api
        return 404, "Not Found"

    return respond


@pytest.fixture
def serve():
    """Start a ThreadingHTTPServer on 127.0.0.1 whose answers come from respond(handler) -> (code, body[, headers])."""
    servers = []

    def start(respond, port=0, context=None, host="127.0.0.1"):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.server.requests.append((self.path, dict(self.headers)))
                answer = respond(self)
                code, body, headers = answer if len(answer) == 3 else (*answer, {})
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", headers.pop("Content-Type", "text/plain; charset=utf-8"))
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        server.requests = []
        server.release = threading.Event()  # set at teardown so no handler outlives the test
        if context:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        server.url = "%s://%s:%d" % ("https" if context else "http", host, server.server_port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def raw_server():
    """A TCP server on 127.0.0.1 that sends `reply` to every connection and closes it (not HTTP)."""
    sockets = []

    def start(reply):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        sockets.append(listener)

        def loop():
            while True:
                try:
                    conn = listener.accept()[0]
                except OSError:
                    return
                conn.recv(4096)
                conn.sendall(reply)
                conn.close()

        threading.Thread(target=loop, daemon=True).start()
        return "http://127.0.0.1:%d" % listener.getsockname()[1]

    yield start
    for listener in sockets:
        listener.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_is_healthy_with_version_and_latencies(serve, capsys):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url)
    assert rc == 0
    assert (result["healthy"], result["status"], result["version"]) == (True, "ok", "3.17.2")
    assert result["changed"] is False
    assert result["attempts"] == 1 and result["url"] == server.url
    assert all(isinstance(result["latency_ms"][k], float) for k in ("health", "version", "api"))
    assert [request[0] for request in server.requests] == ["/health", "/version", API_PATH, SERVER_INFO]
    assert result["workspaces_enabled"] is False


@pytest.mark.parametrize(
    ("version", "server_info", "expected"),
    [
        ("3.17.2", (200, '{"store_type": "SqlStore", "workspaces_enabled": true}'), True),
        ("3.17.2", (200, '{"workspaces_enabled": false}'), False),
        ("3.17.2", (500, "Internal Server Error"), None),
        ("3.17.2", (200, "not json"), None),
        ("3.17.2", (200, '{"workspaces_enabled": "yes"}'), None),
        ("2.22.1", None, None),
    ],
    ids=["on", "off", "an error", "not JSON", "not a bool", "MLflow 2"],
)
def test_workspaces_are_reported_as_server_info_says_and_never_make_mlflow_unhealthy(
    serve, capsys, version, server_info, expected
):
    server = serve(mlflow_like(version=version, server_info=server_info))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 0 and result["healthy"] is True and result["workspaces_enabled"] is expected, result
    # MLflow 2 has no server-info: it is not asked.
    assert (SERVER_INFO in [request[0] for request in server.requests]) is (version != "2.22.1")


def test_an_unhealthy_server_reports_no_workspaces(capsys):
    _rc, result = run_module(capsys, url=f"http://127.0.0.1:{free_port()}", wait_timeout=0, fail_on_unhealthy=False)
    assert result["healthy"] is False and result["workspaces_enabled"] is None, result


def test_refused_port_is_unreachable_and_names_host_port(capsys):
    port = free_port()
    rc, result = run_module(capsys, url="http://127.0.0.1:%d" % port)
    assert rc == 1 and result["failed"]
    assert (result["healthy"], result["status"]) == (False, "unreachable")
    assert "Nothing listens on 127.0.0.1:%d" % port in result["msg"]
    assert "docker compose ps" in result["msg"]


def test_slow_server_times_out_and_names_the_timeout(serve, capsys):
    server = serve(lambda handler: handler.server.release.wait(10) and (200, "OK"))
    rc, result = run_module(capsys, url=server.url, timeout=0.3)
    assert rc == 1
    assert result["status"] == "timeout"
    assert "timeout=0.3 s" in result["msg"]


def test_host_outside_allowed_hosts_is_forbidden_host(serve, capsys):
    server = serve(mlflow_like(allowed_hosts=["example.org:*"]))
    rc, result = run_module(capsys, url=server.url, host_header="localhost:5000")
    assert rc == 1
    assert result["status"] == "forbidden_host"
    assert "'localhost:5000'" in result["msg"]
    assert "mlflow_server_allowed_hosts" in result["msg"] and "--allowed-hosts" in result["msg"]
    assert server.requests[-1][0] == API_PATH
    assert server.requests[-1][1]["Host"] == "localhost:5000"


def test_health_and_version_alone_cannot_see_the_host_check(serve, capsys):
    server = serve(mlflow_like(allowed_hosts=["example.org:*"]))
    rc, result = run_module(capsys, url=server.url, host_header="localhost:5000", check_api=False)
    assert rc == 0 and result["healthy"]
    assert result["latency_ms"]["api"] is None


def test_host_header_wins_over_headers_and_headers_are_sent(serve, capsys):
    server = serve(mlflow_like(allowed_hosts=["localhost:*"]))
    rc, result = run_module(
        capsys, url=server.url, host_header="localhost:5000", headers={"Host": "evil.example:1", "X-Probe": "ansible"}
    )
    assert rc == 0 and result["healthy"]
    assert all(h["Host"] == "localhost:5000" and h["X-Probe"] == "ansible" for _path, h in server.requests)


def test_host_in_headers_is_named_in_the_forbidden_host_message(serve, capsys):
    server = serve(mlflow_like(allowed_hosts=["example.org:*"]))
    rc, result = run_module(capsys, url=server.url, headers={"host": "localhost:5000"})
    assert rc == 1
    assert result["status"] == "forbidden_host"
    assert "'localhost:5000'" in result["msg"]


# What MLflow's basic-auth app answers without valid credentials (mlflow/server/auth/__init__.py).
MLFLOW_401_BODY = (
    "You are not authenticated. Please see "
    "https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to authenticate."
)


def basic_auth(user, password, without_permission=None):
    """Like MLflow's basic-auth app: /health is open, everything else wants credentials.

    Missing, wrong or unknown credentials get 401 with WWW-Authenticate: Basic realm="mlflow", as from MLflow;
    the users in without_permission ({name: password}) get 403 "Permission denied" on the API read.
    """
    users = dict(without_permission or {}, **{user: password})

    def respond(handler):
        if handler.path == "/health":
            return mlflow_like()(handler)
        scheme, _sep, encoded = handler.headers.get("Authorization", "").partition(" ")
        try:
            name, _sep, given = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            name = given = None
        if scheme != "Basic" or name not in users or users[name] != given:
            return 401, MLFLOW_401_BODY, {"WWW-Authenticate": 'Basic realm="mlflow"'}
        if name in (without_permission or {}) and handler.path == API_PATH:
            return 403, "Permission denied"
        return mlflow_like()(handler)

    return respond


def test_missing_credentials_are_auth_required(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1
    assert result["status"] == "auth_required"
    assert "url_username" in result["msg"] and "401" in result["msg"]


def test_missing_credentials_say_so_and_name_both_options(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1 and result["status"] == "auth_required"
    assert result["msg"].startswith(server.url + "/version answered 401 without credentials")
    assert "set url_username and url_password" in result["msg"].lower()
    # /health is open on MLflow's basic-auth app, so the 401 came from /version.
    assert [path for path, _h in server.requests] == ["/health", "/version"]


@pytest.mark.parametrize("user, password", [("monitor", "wrong-pw"), ("nobody", "s3cret-pw")])
def test_wrong_credentials_name_the_user_and_not_the_password(serve, capsys, user, password):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, output, result = run_module_raw(capsys, url=server.url, url_username=user, url_password=password)
    assert rc == 1 and result["status"] == "auth_required"
    assert "answered 401 to user '%s': the password is wrong or the user does not exist" % user in result["msg"]
    assert password not in output


def test_authorization_given_in_headers_is_blamed_on_a_401(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url, headers={"Authorization": "Bearer expired-token"})
    assert rc == 1 and result["status"] == "auth_required"
    assert "Authorization header given in headers" in result["msg"]


def test_url_username_replaces_an_authorization_header(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(
        capsys,
        url=server.url,
        url_username="monitor",
        url_password="s3cret-pw",
        headers={"authorization": "Bearer other"},
    )
    assert rc == 0 and result["healthy"]
    assert all(h["Authorization"].startswith("Basic ") for _path, h in server.requests)
    assert not any("Bearer" in value for _path, h in server.requests for value in h.values())


def test_user_without_permission_is_named_on_a_403(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw", without_permission={"reader": "reader-pw"}))
    rc, output, result = run_module_raw(capsys, url=server.url, url_username="reader", url_password="reader-pw")
    assert rc == 1 and result["status"] == "auth_required"
    assert "answered 403: user 'reader' is not permitted to read experiments" in result["msg"]
    assert result["version"] == "3.17.2"
    assert "reader-pw" not in output


def test_credentials_are_sent_with_the_first_request(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url, url_username="monitor", url_password="s3cret-pw")
    assert rc == 0 and result["healthy"] and result["version"] == "3.17.2"
    # Preemptive: every request carried the header, so the server never had to answer 401.
    # The fourth asks whether workspaces are on (server-info, which MLflow answers without a login too).
    assert [path for path, _h in server.requests][-1] == SERVER_INFO and len(server.requests) == PROBE_REQUESTS
    assert all(h.get("Authorization", "").startswith("Basic ") for _path, h in server.requests)
    assert "s3cret-pw" not in json.dumps(result)


def test_api_500_is_api_error_with_status_and_body_and_is_retried(serve, capsys):
    server = serve(mlflow_like(api=(500, "sqlite3.OperationalError: database is locked")))
    rc, result = run_module(capsys, url=server.url, wait_timeout=0.6, interval=0.1)
    assert rc == 1
    assert result["status"] == "api_error"
    assert "HTTP 500" in result["msg"] and "database is locked" in result["msg"]
    assert result["attempts"] > 1


def test_wrong_version_is_version_mismatch_naming_both(serve, capsys):
    server = serve(mlflow_like(version="3.16.1"))
    rc, result = run_module(capsys, url=server.url, expected_version="3.17.2")
    assert rc == 1
    assert (result["status"], result["version"]) == ("version_mismatch", "3.16.1")
    assert "3.16.1" in result["msg"] and "3.17.2" in result["msg"]


def test_leading_v_of_expected_version_is_ignored(serve, capsys):
    server = serve(mlflow_like(version="3.17.2"))
    rc, result = run_module(capsys, url=server.url, expected_version="v3.17.2")
    assert rc == 0 and result["healthy"]


def test_a_persistent_error_ends_the_wait_after_two_probes(serve, capsys):
    server = serve(mlflow_like(version="3.16.1"))
    rc, result = run_module(capsys, url=server.url, expected_version="3.17.2", wait_timeout=300, interval=0.1)
    assert rc == 1
    assert result["status"] == "version_mismatch"
    assert result["attempts"] == 2


def test_html_page_is_not_mlflow_and_mentions_airplay(serve, capsys):
    page = "<html><body>Welcome to nginx!</body></html>"
    server = serve(lambda handler: (200, page, {"Content-Type": "text/html"}))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1
    assert result["status"] == "not_mlflow"
    assert "Something else answers on port %d" % server.server_port in result["msg"]
    assert "AirPlay" in result["msg"]


def test_airplay_receiver_403_is_not_mlflow(serve, capsys):
    # macOS AirPlay Receiver (ControlCenter) answers 403 with an empty body on port 5000.
    server = serve(lambda handler: (403, "", {"Server": "AirTunes/845.5.1"}))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1
    assert result["status"] == "not_mlflow"
    assert "AirPlay" in result["msg"]


def test_closed_without_answer_is_unreachable(raw_server, capsys):
    # docker-proxy accepts and closes while no container listens behind it.
    url = raw_server(b"")
    rc, result = run_module(capsys, url=url)
    assert rc == 1
    assert result["status"] == "unreachable"
    assert "without an answer" in result["msg"]


def test_non_http_service_is_not_mlflow(raw_server, capsys):
    url = raw_server(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    rc, result = run_module(capsys, url=url)
    assert rc == 1
    assert result["status"] == "not_mlflow"


def test_server_answering_503_at_first_is_waited_for(serve, capsys):
    ready_after = 1.0
    first = []

    def respond(handler):
        first.append(first[0] if first else time.monotonic())
        if time.monotonic() - first[0] < ready_after:
            return 503, "Service Unavailable"
        return mlflow_like()(handler)

    server = serve(respond)
    rc, result = run_module(capsys, url=server.url, wait_timeout=30, interval=0.2)
    assert rc == 0 and result["healthy"]
    assert result["attempts"] > 1
    assert result["waited_s"] >= ready_after


def test_server_listening_late_is_waited_for(serve, capsys):
    port = free_port()
    timer = threading.Timer(1.5, serve, args=(mlflow_like(),), kwargs={"port": port})
    timer.start()
    try:
        rc, result = run_module(capsys, url="http://127.0.0.1:%d" % port, wait_timeout=30, interval=1)
    finally:
        timer.join()
    assert rc == 0 and result["healthy"]
    # Refused probes are repeated every 0.1 s: 1.5 s of waiting at interval=1 would allow only 2 or 3.
    assert result["attempts"] > 5
    assert "quick_retry" not in result


def test_fail_on_unhealthy_false_reports_instead_of_failing(capsys):
    rc, result = run_module(capsys, url="http://127.0.0.1:%d" % free_port(), fail_on_unhealthy=False)
    assert rc == 0
    assert "failed" not in result
    assert (result["healthy"], result["status"], result["changed"]) == (False, "unreachable", False)
    assert "Nothing listens" in result["msg"]


def test_check_mode_still_probes(serve, capsys):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url, _ansible_check_mode=True)
    assert rc == 0 and result["healthy"] and result["changed"] is False
    assert len(server.requests) == PROBE_REQUESTS


@pytest.mark.parametrize("args", [{"timeout": 0}, {"interval": -1}, {"wait_timeout": -5}])
def test_nonsense_durations_fail_with_the_option_name(capsys, args):
    rc, result = run_module(capsys, **args)
    assert rc == 1
    assert next(iter(args)) in result["msg"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return cert, context


def test_untrusted_certificate_is_tls_error(serve, certificate, capsys):
    server = serve(mlflow_like(), context=certificate[1])
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1
    assert result["status"] == "tls_error"
    assert "certificate verification failed" in result["msg"]
    assert "ca_path" in result["msg"] and "validate_certs" in result["msg"]


def test_https_to_a_plain_http_server_is_tls_error(serve, capsys):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url.replace("http://", "https://"))
    assert rc == 1
    assert result["status"] == "tls_error"
    assert "handshake" in result["msg"]


def test_ca_path_makes_the_certificate_trusted(serve, certificate, capsys):
    server = serve(mlflow_like(), context=certificate[1])
    rc, result = run_module(capsys, url=server.url, ca_path=certificate[0])
    assert rc == 0 and result["healthy"]


# The wait policy and error classification of module_utils, with a fake clock and no network.
# (Kept in this file: a second test_mlflow_health.py under module_utils/ would clash with this one
# for plain pytest, since tests/ has no __init__.py files.)


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedProbe:
    """Returns the given statuses in order (the last one repeats); each probe costs 10 ms.

    "unreachable" stands for a refused connection, which the real probe marks for a quick retry.
    """

    def __init__(self, fake_time, statuses):
        self.time = fake_time
        self.statuses = list(statuses)
        self.calls = 0

    def probe(self):
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        self.time.now += 0.01
        quick = status == "unreachable"
        return dict(
            healthy=status == "ok", status=status, version=None, latency_ms={}, msg=status + ".", quick_retry=quick
        )


def run(statuses, wait_timeout, interval=1.0):
    fake = FakeTime()
    probe = ScriptedProbe(fake, statuses)
    result = wait_until_healthy(probe, wait_timeout, interval, sleep=fake.sleep, clock=fake.clock)
    return result, probe, fake


def test_zero_wait_timeout_probes_once_without_sleeping():
    result, probe, fake = run(["unreachable"], wait_timeout=0)
    assert (probe.calls, result["attempts"], fake.sleeps) == (1, 1, [])
    assert result["status"] == "unreachable"


def test_transient_statuses_are_retried_until_the_deadline():
    result, probe, fake = run(["unreachable", "timeout", "api_error"], wait_timeout=5, interval=1)
    assert not result["healthy"]
    assert result["attempts"] == probe.calls >= 5
    assert result["waited_s"] >= 5
    # The last sleep is cut so the final probe happens at the deadline, not after it.
    assert all(s <= 1 for s in fake.sleeps)
    assert "Gave up after %d attempts" % result["attempts"] in result["msg"]


def test_wait_ends_when_the_server_becomes_healthy():
    result, _probe, fake = run(["unreachable", "unreachable", "api_error", "ok"], wait_timeout=60, interval=2)
    assert result["healthy"] and result["status"] == "ok"
    assert result["attempts"] == 4
    # Refused connections are re-probed after 0.1 s; an HTTP error waits the whole interval.
    assert fake.sleeps == [0.1, 0.1, 2]
    assert "quick_retry" not in result


def test_quick_retry_never_waits_longer_than_interval():
    result, _probe, fake = run(["unreachable", "ok"], wait_timeout=60, interval=0.05)
    assert result["healthy"]
    assert fake.sleeps == [0.05]


@pytest.mark.parametrize("status", sorted(PERSISTENT_STATUSES))
def test_persistent_status_twice_in_a_row_ends_the_wait_early(status):
    result, probe, _fake = run(["unreachable", status], wait_timeout=600, interval=1)
    assert result["status"] == status
    assert result["attempts"] == probe.calls == 3
    assert result["waited_s"] < 600
    assert "waiting will not fix it" in result["msg"]


def test_a_single_persistent_status_does_not_end_the_wait():
    # A server being replaced may answer once as the old one (version_mismatch), then restart.
    result, _probe, _fake = run(["version_mismatch", "unreachable", "version_mismatch", "ok"], wait_timeout=60)
    assert result["healthy"]
    assert result["attempts"] == 4


def test_every_status_is_documented_in_return():
    # ansible-doc is the manual: the statuses it lists are the ones the code returns.
    documented = yaml.safe_load(mlflow_health.RETURN)["status"]["description"]
    named = {line.split(")", 1)[0].removeprefix("V(") for line in documented if line.startswith("V(")}
    assert named == set(STATUSES)
    assert PERSISTENT_STATUSES < set(STATUSES)


def test_the_statuses_that_end_a_wait_early_are_documented():
    description = yaml.safe_load(mlflow_health.DOCUMENTATION)["description"]
    paragraph = next(line for line in description if "configuration errors" in line)
    named = set(re.findall(r"C\((\w+)\)", paragraph.split("configuration errors")[0].split("gives them.")[1]))
    assert named == set(PERSISTENT_STATUSES)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("http://mlflow.example.org/prefix", "mlflow.example.org:80"),
        ("https://mlflow.example.org", "mlflow.example.org:443"),
        ("http://[::1]:5000", "[::1]:5000"),
    ],
)
def test_host_port_fills_in_the_default_port(url, expected):
    assert host_port(url) == expected


@pytest.mark.parametrize(
    "exc, status, words",
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), "unreachable", "Nothing listens on"),
        (urllib.error.URLError(socket.timeout("timed out")), "timeout", "timeout=2.5 s"),
        (socket.timeout("timed out"), "timeout", "timeout=2.5 s"),
        (urllib.error.URLError(ssl.SSLCertVerificationError(1, "self-signed certificate")), "tls_error", "ca_path"),
        (http.client.RemoteDisconnected("closed"), "unreachable", "closed it without an answer"),
        (http.client.BadStatusLine("SSH-2.0-OpenSSH_9.2"), "not_mlflow", "Something else answers on port 5000"),
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "unreachable", "Cannot reach"),
    ],
)
def test_transport_errors_are_classified(exc, status, words):
    found = classify_error(exc, "http://127.0.0.1:5000/health", 2.5)
    assert found.status == status
    assert words in found.msg


# Redirects, where credentials go, proxies, the request deadline and which URLs are accepted.

PASSWORD = "pw-Zq81-never-shown"


def redirect_to(location, code=302, at="/health"):
    """Answers like MLflow, except that path `at` answers `code` with Location: location."""

    def respond(handler):
        if handler.path == at:
            return code, "", {"Location": location}
        return mlflow_like()(handler)

    return respond


def recorder():
    """A server that stands for another host: it records what reaches it and answers like MLflow."""
    return mlflow_like()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("at", ["/health", "/version", API_PATH])
def test_redirect_is_reported_and_never_followed(serve, capsys, code, at):
    other = serve(recorder())
    server = serve(redirect_to(other.url + at, code=code, at=at))
    rc, output, result = run_module_raw(
        capsys, url=server.url, url_username="monitor", url_password=PASSWORD, wait_timeout=5, interval=0.1
    )
    assert rc == 1 and result["status"] == "redirect"
    assert "%s%s answered %d to %s%s" % (server.url, at, code, other.url, at) in result["msg"]
    assert "does not follow redirects" in result["msg"] and "point url at the server itself" in result["msg"]
    # A persistent status: the second identical answer ends the wait.
    assert result["attempts"] == 2
    assert other.requests == []
    assert PASSWORD not in output
    # Credentials went to url itself, the only server asked.
    assert all(h.get("Authorization", "").startswith("Basic ") for _path, h in server.requests)


def test_redirect_to_another_host_leaks_no_credentials(serve, capsys):
    # The second server records any Authorization header it receives; it must never be contacted at all.
    other = serve(recorder())
    server = serve(redirect_to("http://monitor:%s@127.0.0.1:%d/health" % (PASSWORD, other.server_port)))
    rc, output, result = run_module_raw(capsys, url=server.url, url_username="monitor", url_password=PASSWORD)
    assert rc == 1 and result["status"] == "redirect"
    assert "answered 302 to http://127.0.0.1:%d/health" % other.server_port in result["msg"]
    assert other.requests == []
    assert not any("Authorization" in h for _path, h in other.requests)
    assert PASSWORD not in output


def test_relative_redirect_and_redirect_without_location(serve, capsys):
    server = serve(redirect_to("/login?next=/health"))
    _rc, result = run_module(capsys, url=server.url)
    assert result["status"] == "redirect"
    assert "answered 302 to %s/login?next=/health" % server.url in result["msg"]
    server = serve(lambda handler: (302, ""))
    _rc, result = run_module(capsys, url=server.url)
    assert result["status"] == "redirect" and "302 without a Location" in result["msg"]


def fake_proxy():
    """An HTTP proxy stand-in: records each request (absolute URI and headers) and answers like MLflow."""

    def respond(handler):
        path = urllib.parse.urlsplit(handler.path)
        handler.path = path.path + ("?" + path.query if path.query else "")
        return mlflow_like()(handler)

    return respond


@pytest.fixture
def proxy_env(monkeypatch):
    """Point every proxy variable at url; no_proxy exempts nothing, so only the module's rule can bypass it."""

    def point(url):
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)

    return point


@pytest.mark.parametrize("use_proxy", [True, False])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_url_never_goes_through_a_proxy(serve, capsys, proxy_env, use_proxy, host):
    proxy = serve(fake_proxy())
    proxy_env(proxy.url)
    server = serve(mlflow_like())
    url = "http://%s:%d" % (host, server.server_port)
    rc, result = run_module(capsys, url=url, use_proxy=use_proxy, host_header="localhost:5000")
    assert rc == 0 and result["healthy"], result["msg"]
    assert proxy.requests == []
    assert len(server.requests) == PROBE_REQUESTS


def test_use_proxy_sends_other_hosts_through_the_proxy(serve, capsys, proxy_env):
    proxy = serve(fake_proxy())
    proxy_env("http://squid:proxy-pw@127.0.0.1:%d" % proxy.server_port)
    # Not resolvable (.invalid): only the proxy can answer for it.
    rc, output, result = run_module_raw(
        capsys, url="http://mlflow.invalid:5000", url_username="monitor", url_password=PASSWORD
    )
    assert rc == 0 and result["healthy"], result["msg"]
    assert [path for path, _h in proxy.requests] == [
        "http://mlflow.invalid:5000/health",
        "http://mlflow.invalid:5000/version",
        "http://mlflow.invalid:5000" + API_PATH,
        "http://mlflow.invalid:5000" + SERVER_INFO,
    ]
    expected = "Basic " + base64.b64encode(b"squid:proxy-pw").decode()
    assert all(h["Proxy-Authorization"] == expected for _path, h in proxy.requests)
    assert all(h["Host"] == "mlflow.invalid:5000" for _path, h in proxy.requests)
    assert PASSWORD not in output and "proxy-pw" not in output


def local_address():
    """A non-loopback IPv4 address of this machine, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # UDP: sends nothing, only picks the outgoing address
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.parametrize("use_proxy", [True, False])
def test_use_proxy_false_reaches_a_non_loopback_address_directly(serve, capsys, proxy_env, use_proxy):
    address = local_address()
    if not address:
        pytest.skip("this machine has no non-loopback IPv4 address")
    try:
        server = serve(mlflow_like(), host=address)
    except OSError as e:
        pytest.skip("cannot listen on %s: %s" % (address, e))
    proxy = serve(fake_proxy())
    proxy_env(proxy.url)
    rc, result = run_module(capsys, url=server.url, use_proxy=use_proxy)
    assert rc == 0 and result["healthy"], result["msg"]
    if use_proxy:
        assert len(proxy.requests) == PROBE_REQUESTS and server.requests == []
    else:
        assert proxy.requests == [] and len(server.requests) == PROBE_REQUESTS


@pytest.fixture
def connect_proxy():
    """A CONNECT proxy that tunnels every request to one target port on 127.0.0.1; records what it was sent."""
    listeners = []

    def start(target_port):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)
        seen = []

        def pipe(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def tunnel(conn):
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(4096)
                if not data:
                    conn.close()
                    return
                head += data
            seen.append(head.decode("latin-1"))
            upstream = socket.create_connection(("127.0.0.1", target_port))
            conn.sendall(b"HTTP/1.0 200 Connection established\r\n\r\n")
            threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
            pipe(upstream, conn)

        def loop():
            while True:
                try:
                    conn = listener.accept()[0]
                except OSError:
                    return
                threading.Thread(target=tunnel, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return "http://127.0.0.1:%d" % listener.getsockname()[1], seen

    yield start
    for listener in listeners:
        listener.close()


def test_https_goes_through_the_proxy_in_a_connect_tunnel(serve, certificate, capsys, proxy_env, connect_proxy):
    server = serve(mlflow_like(), context=certificate[1])
    proxy_url, seen = connect_proxy(server.server_port)
    proxy_env(proxy_url)
    rc, result = run_module(
        capsys, url="https://mlflow.invalid", validate_certs=False, url_username="monitor", url_password=PASSWORD
    )
    assert rc == 0 and result["healthy"], result["msg"]
    assert len(seen) == PROBE_REQUESTS and all(head.startswith("CONNECT mlflow.invalid:443 ") for head in seen)
    # The credentials travel inside the TLS tunnel, never in the clear to the proxy.
    assert not any("Authorization" in head or PASSWORD in head for head in seen)
    assert all(h["Host"] == "mlflow.invalid" and h["Authorization"].startswith("Basic ") for _p, h in server.requests)


def test_unusable_proxy_variable_fails_naming_use_proxy(capsys, proxy_env):
    proxy_env("socks5://user:proxy-pw@127.0.0.1:1080")
    rc, output, result = run_module_raw(capsys, url="http://mlflow.invalid:5000")
    assert rc == 1
    assert "use_proxy=false" in result["msg"] and "no_proxy" in result["msg"]
    assert "proxy-pw" not in output


def test_proxy_asking_for_a_login_is_auth_required(serve, capsys, proxy_env):
    proxy = serve(lambda handler: (407, "Proxy Authentication Required", {"Proxy-Authenticate": 'Basic realm="p"'}))
    proxy_env(proxy.url)
    rc, result = run_module(capsys, url="http://mlflow.invalid:5000")
    assert rc == 1 and result["status"] == "auth_required"
    assert "proxy 127.0.0.1:%d answered 407" % proxy.server_port in result["msg"]


@pytest.fixture
def trickle_server():
    """A TCP server on 127.0.0.1 that sends head at once, then trickle one byte every `every` seconds."""
    stop = threading.Event()
    listeners = []

    def start(head, trickle, every=0.5):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listeners.append(listener)

        def answer(conn):
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(head)
                    for i in range(len(trickle)):
                        if stop.wait(every):
                            return
                        conn.sendall(trickle[i : i + 1])
                except OSError:
                    return  # the client gave up: what the test wants

        def loop():
            while True:
                try:
                    conn = listener.accept()[0]
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return "http://127.0.0.1:%d" % listener.getsockname()[1]

    yield start
    stop.set()
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize(
    "head, trickle",
    [
        # The status line and headers a byte at a time (about 40 s in all).
        (b"", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"),
        # Headers at once, then a body a byte at a time (about 32 s in all).
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 64\r\n\r\n", b"O" * 64),
    ],
    ids=["headers", "body"],
)
def test_a_trickling_server_cannot_stretch_the_timeout(trickle_server, capsys, head, trickle):
    url = trickle_server(head, trickle)
    started = time.monotonic()
    rc, result = run_module(capsys, url=url, timeout=2)
    elapsed = time.monotonic() - started
    assert rc == 1 and result["status"] == "timeout"
    assert "timeout=2.0 s" in result["msg"]
    # A socket timeout per read would never trip: each read gets a byte within 0.5 s.
    assert elapsed < 5, elapsed
    assert 1900 <= result["latency_ms"]["health"] < 5000


def listener_without_service():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    return listener


def nobody_connected(listener):
    try:
        listener.accept()[0].close()
    except socket.timeout:
        return True
    return False


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://127.0.0.1:{port}/", "the scheme 'ftp'"),
        ("file:///etc/passwd", "the scheme 'file'"),
        ("127.0.0.1:{port}", "no scheme"),
        ("localhost:{port}", "no scheme"),
        ("//127.0.0.1:{port}", "no scheme"),
        ("gopher://127.0.0.1:{port}", "the scheme 'gopher'"),
    ],
)
def test_only_http_and_https_urls_are_probed(capsys, url, words):
    listener = listener_without_service()
    port = listener.getsockname()[1]
    try:
        rc, result = run_module(capsys, url=url.format(port=port))
        assert nobody_connected(listener)
    finally:
        listener.close()
    assert rc == 1 and "status" not in result
    assert result["msg"].startswith("url must be an http:// or https:// URL")
    assert words in result["msg"] and "Only the schemes http and https are allowed" in result["msg"]


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://", "url has no host"),
        ("http:///health", "url has no host"),
        ("https://:5000", "url has no host"),
        ("http://127.0.0.1:99999", "url has an invalid port"),
        ("http://127.0.0.1:5000/?x=1", "without ?query or #fragment"),
        ("http://[::1", "url is not a valid URL"),
    ],
)
def test_url_without_a_usable_host_fails_before_any_request(capsys, url, words):
    rc, result = run_module(capsys, url=url)
    assert rc == 1 and "status" not in result
    assert words in result["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "http://monitor:{pw}@127.0.0.1:{port}",
        "https://monitor:{pw}@127.0.0.1:{port}/prefix",
        "monitor:{pw}@127.0.0.1:{port}",
        "ftp://monitor:{pw}@127.0.0.1:{port}",
        "http://{pw}@127.0.0.1:{port}",
    ],
)
def test_credentials_in_url_are_refused_and_never_echoed(capsys, url):
    listener = listener_without_service()
    port = listener.getsockname()[1]
    try:
        rc, output, result = run_module_raw(capsys, url=url.format(pw=PASSWORD, port=port))
        assert nobody_connected(listener)
    finally:
        listener.close()
    assert rc == 1
    assert "url" in result["msg"]
    assert PASSWORD not in output
    # Ansible echoes the module arguments (invocation): the password is masked there too.
    assert "********" in result["invocation"]["module_args"]["url"]


def test_credentials_in_url_refusal_names_the_options(capsys):
    rc, output, result = run_module_raw(capsys, url="http://monitor:p%40ss-word@127.0.0.1:5000")
    assert rc == 1
    assert "url must not contain credentials" in result["msg"]
    assert "url_username and url_password" in result["msg"]
    assert "p%40ss-word" not in output and "p@ss-word" not in output


def slow(handler):
    handler.server.release.wait(10)
    return 200, "OK"


@pytest.mark.parametrize(
    "respond, args, status",
    [
        (mlflow_like(), {}, "ok"),
        (basic_auth("monitor", "other"), {}, "auth_required"),
        (redirect_to("http://127.0.0.1:1/"), {}, "redirect"),
        (slow, {"timeout": 0.3}, "timeout"),
        (lambda handler: (500, "boom %s" % handler.headers.get("Authorization")), {}, "api_error"),
        (mlflow_like(version="3.16.1"), {"expected_version": "3.17.2"}, "version_mismatch"),
    ],
)
def test_the_password_appears_nowhere_in_the_output(serve, capsys, respond, args, status):
    server = serve(respond)
    rc, output, result = run_module_raw(
        capsys, url=server.url, url_username="monitor", url_password=PASSWORD, wait_timeout=0.3, interval=0.1, **args
    )
    assert result["status"] == status
    assert rc == (0 if status == "ok" else 1)
    assert PASSWORD not in output
    assert base64.b64encode(("monitor:" + PASSWORD).encode()).decode() not in output


def test_unreachable_with_a_password_does_not_echo_it(capsys):
    rc, output, result = run_module_raw(
        capsys, url="http://127.0.0.1:%d" % free_port(), url_username="monitor", url_password=PASSWORD
    )
    assert rc == 1 and result["status"] == "unreachable"
    assert PASSWORD not in output


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch):
    """An `ssh` first on PATH that logs its arguments; `-fN` fails like a refused key when told to."""
    log = tmp_path / "ssh.log"
    script = tmp_path / "bin" / "ssh"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "%s"\n'
        'case "$*" in *-fN*) if [ -n "$FAKE_SSH_REFUSE" ]; then\n'
        '  echo "alice@server: Permission denied (publickey)." >&2; exit 255; fi;; esac\n'
        "exit 0\n" % log
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (script.parent, os.environ["PATH"]))
    return log


def test_ssh_tunnel_is_opened_probed_through_and_closed(serve, fake_ssh, capsys):
    server = serve(mlflow_like())
    tunnel = {"host": "mlflowserver", "config": "/home/alice/.ssh/config"}
    rc, result = run_module(capsys, url=server.url, ssh_tunnel=tunnel)
    assert rc == 0 and result["healthy"] and server.requests
    opened, closed = fake_ssh.read_text().splitlines()
    assert opened.startswith("-F /home/alice/.ssh/config -o BatchMode=yes") and opened.endswith("-fN -- mlflowserver")
    assert "-o ExitOnForwardFailure=yes" in opened
    control = next(word for word in opened.split() if word.startswith("ControlPath="))
    assert closed == "-F /home/alice/.ssh/config -o %s -O exit -- mlflowserver" % control
    assert not os.path.exists(os.path.dirname(control.split("=", 1)[1]))


def test_a_tunnel_that_does_not_open_fails_with_sshs_message(serve, fake_ssh, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_REFUSE", "1")
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url, ssh_tunnel={"host": "mlflowserver"})
    assert rc == 1 and result["status"] == "tunnel_failed" and not result["healthy"]
    assert "ssh mlflowserver -fN` did not open (rc 255): alice@server: Permission denied (publickey)." in result["msg"]
    assert server.requests == [] and len(fake_ssh.read_text().splitlines()) == 1


@pytest.mark.parametrize("host", ["-oProxyCommand=touch /tmp/x", "-F/dev/null", ""])
def test_a_tunnel_host_that_ssh_would_read_as_an_option_is_refused(serve, fake_ssh, capsys, host):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url, ssh_tunnel={"host": host})
    assert rc == 1 and "ssh_tunnel.host must be the Host alias of an ssh config block" in result["msg"]
    # Nothing ran: no ssh, no probe.
    assert not fake_ssh.exists() and server.requests == []


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A real interpreter without mlflow: a new venv, with nothing installed."""
    where = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    return str(where / "bin" / "python")


def test_a_client_of_the_servers_major_version_fits(serve, capsys):
    # This venv's own interpreter, with its real mlflow (3.17.2).
    server = serve(mlflow_like(version="3.17.2"))
    rc, result = run_module(capsys, url=server.url, client_python=sys.executable)
    assert rc == 0 and result["client"] == {"python": sys.executable, "version": "3.17.2", "fits": True, "fix": None}


def test_a_client_a_major_version_apart_is_reported_with_the_command_that_fixes_it(serve, capsys):
    server = serve(mlflow_like(version="2.22.1", server_info=None))
    rc, result = run_module(capsys, url=server.url, client_python=sys.executable)
    assert rc == 0 and result["healthy"] is True, result
    assert result["client"] == {
        "python": sys.executable,
        "version": "3.17.2",
        "fits": False,
        "fix": f"{sys.executable} -m pip install 'mlflow>=2.22.1,<3'",
    }


def test_an_interpreter_without_mlflow_or_none_at_all_does_not_fit(serve, capsys, bare_python):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url, client_python=bare_python)
    assert rc == 0 and result["client"] == {
        "python": bare_python,
        "version": None,
        "fits": False,
        "fix": f"{bare_python} -m pip install 'mlflow>=3.17.2,<4'",
    }
    rc, result = run_module(capsys, url=server.url, client_python="no-such-python3")
    assert rc == 0 and result["client"]["version"] is None and result["client"]["python"] == "no-such-python3"


def test_no_interpreter_no_comparison(serve, capsys):
    server = serve(mlflow_like())
    rc, result = run_module(capsys, url=server.url)
    assert rc == 0 and result["client"] is None

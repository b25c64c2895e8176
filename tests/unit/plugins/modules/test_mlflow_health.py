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
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
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


def run_module(capsys, **args):
    """Return (exit code, result dict) of one module run."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            mlflow_health.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def mlflow_like(version="3.17.2", allowed_hosts=None, api=(200, EXPERIMENTS)):
    """A respond function that answers like `mlflow server` does."""

    def respond(handler):
        if handler.path == "/health":
            return 200, "OK"
        if handler.path == "/version":
            return 200, version
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

    def start(respond, port=0, context=None):
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

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.requests = []
        server.release = threading.Event()  # set at teardown so no handler outlives the test
        if context:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        server.url = "%s://127.0.0.1:%d" % ("https" if context else "http", server.server_port)
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
    assert [request[0] for request in server.requests] == ["/health", "/version", API_PATH]


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


def basic_auth(user, password):
    """Like MLflow's basic-auth app: /health is open, everything else wants credentials."""
    expected = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()

    def respond(handler):
        if handler.path != "/health" and handler.headers.get("Authorization") != expected:
            return 401, "You are not authenticated.", {"WWW-Authenticate": 'Basic realm="mlflow"'}
        return mlflow_like()(handler)

    return respond


def test_missing_credentials_are_auth_required(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url)
    assert rc == 1
    assert result["status"] == "auth_required"
    assert "url_username" in result["msg"] and "401" in result["msg"]


def test_credentials_are_sent_with_the_first_request(serve, capsys):
    server = serve(basic_auth("monitor", "s3cret-pw"))
    rc, result = run_module(capsys, url=server.url, url_username="monitor", url_password="s3cret-pw")
    assert rc == 0 and result["healthy"] and result["version"] == "3.17.2"
    # Preemptive: every request carried the header, so the server never had to answer 401.
    assert len(server.requests) == 3
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
    assert len(server.requests) == 3


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

# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The decisions of module_utils.mlflow_health's transport: URLs accepted, proxy or not, where credentials go."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading
import time

import pytest
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_health import (
    Deadline,
    HealthProbe,
    is_loopback,
    origin,
    proxy_for,
    redact_url,
    url_error,
    url_secrets,
)


@pytest.fixture
def proxies(monkeypatch):
    """Set the proxy environment: proxies(http=..., https=..., no=...); unset names are removed."""

    def set_env(**values):
        for kind in ("http", "https", "all", "no"):
            for name in (kind + "_proxy", kind.upper() + "_PROXY"):
                monkeypatch.delenv(name, raising=False)
        for kind, value in values.items():
            monkeypatch.setenv(kind + "_proxy", value)

    return set_env


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.3.4.5", "127.1", "2130706433", "localhost", "LOCALHOST.", "::1", "[::1]", "::ffff:127.0.0.1"],
)
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.5", "192.0.2.2", "mlflow.example.org", "localhost.example.org", "::2", "0.0.0.0", "", None]
)
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5000", "https://localhost:5000", "http://[::1]:5000", "http://127.0.0.53"]
)
@pytest.mark.parametrize("use_proxy", [True, False])
def test_loopback_urls_never_take_a_proxy(proxies, url, use_proxy):
    proxies(http="http://proxy.example:3128", https="http://proxy.example:3128")
    assert proxy_for(url, use_proxy) is None


def test_other_hosts_take_the_proxy_of_their_scheme(proxies):
    proxies(http="http://plain.example:3128", https="http://tls.example:3128")
    assert proxy_for("http://mlflow.example.org:5000") == "http://plain.example:3128"
    assert proxy_for("https://mlflow.example.org") == "http://tls.example:3128"


def test_use_proxy_false_connects_other_hosts_directly(proxies):
    proxies(http="http://plain.example:3128", https="http://tls.example:3128")
    assert proxy_for("http://mlflow.example.org:5000", use_proxy=False) is None
    assert proxy_for("https://10.0.0.5", use_proxy=False) is None


def test_no_proxy_exempts_a_host_and_no_variable_means_no_proxy(proxies):
    proxies(http="http://plain.example:3128", no=".example.org")
    assert proxy_for("http://mlflow.example.org:5000") is None
    assert proxy_for("http://10.0.0.5:5000") == "http://plain.example:3128"
    proxies()
    assert proxy_for("http://10.0.0.5:5000") is None


def test_probe_of_a_loopback_url_has_no_proxy_even_with_use_proxy(proxies):
    proxies(http="http://plain.example:3128")
    assert HealthProbe("http://127.0.0.1:5000", use_proxy=True).proxy is None
    assert HealthProbe("http://mlflow.example.org:5000", use_proxy=True).proxy == ("plain.example", 3128)
    assert HealthProbe("http://mlflow.example.org:5000", use_proxy=False).proxy is None


def test_basic_auth_goes_only_to_the_origin_of_url():
    probe = HealthProbe("http://mlflow.example.org:5000/prefix", url_username="monitor", url_password="pw")
    assert probe.auth_headers_for("http://mlflow.example.org:5000/prefix/health")["Authorization"].startswith("Basic ")
    assert probe.auth_headers_for("http://MLflow.example.org:5000/elsewhere") != {}
    for other in (
        "https://mlflow.example.org:5000/prefix/health",  # another scheme
        "http://mlflow.example.org:5001/prefix/health",  # another port
        "http://mlflow.example.org/prefix/health",  # port 80, not 5000
        "http://evil.example/prefix/health",  # another host
        "http://mlflow.example.org.evil.example:5000/",
    ):
        assert probe.auth_headers_for(other) == {}, other


def test_default_port_is_the_same_origin():
    assert (
        origin("https://mlflow.example.org")
        == origin("https://mlflow.example.org:443/x")
        == (
            "https",
            "mlflow.example.org",
            443,
        )
    )
    probe = HealthProbe("http://127.0.0.1", url_username="monitor", url_password="pw")
    assert probe.auth_headers_for("http://127.0.0.1:80/health") != {}


def test_no_credentials_no_authorization_header():
    assert HealthProbe("http://127.0.0.1:5000").auth_headers_for("http://127.0.0.1:5000/health") == {}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:5000", "https://mlflow.example.org/prefix/", "HTTP://[::1]:5000", "http://localhost"]
)
def test_usable_urls(url):
    assert url_error(url) is None


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://host/", "the scheme 'ftp'"),
        ("file:///etc/passwd", "the scheme 'file'"),
        ("localhost:5000", "no scheme"),
        ("", "no scheme"),
        ("http://user:pw@host", "must not contain credentials"),
        ("http://token@host", "must not contain credentials"),
        ("http://", "no host"),
        ("http://host:0x50", "invalid port"),
        ("http://host/#top", "without ?query or #fragment"),
    ],
)
def test_unusable_urls_are_explained_without_repeating_them(url, words):
    error = url_error(url)
    assert words in error
    assert "pw" not in error and "token" not in error


@pytest.mark.parametrize(
    "url, secrets",
    [
        ("http://127.0.0.1:5000", []),
        ("http://monitor:s3cret@127.0.0.1:5000/x@y", ["s3cret"]),
        ("http://monitor:p%40ss@127.0.0.1", ["p%40ss", "p@ss"]),
        ("monitor:s3cret@127.0.0.1:5000", ["s3cret"]),
        ("https://ghp_token@host", ["ghp_token"]),
        ("http://host/path@elsewhere", []),
    ],
)
def test_url_secrets_finds_credentials_even_in_a_url_without_scheme(url, secrets):
    assert url_secrets(url) == secrets


def test_redact_url_drops_user_and_password():
    assert redact_url("https://u:pw@evil.example:8443/x?y=1") == "https://evil.example:8443/x?y=1"
    assert redact_url("http://127.0.0.1:5000/health") == "http://127.0.0.1:5000/health"


def test_probe_refuses_an_unusable_url():
    with pytest.raises(ValueError, match="Only the schemes http and https"):
        HealthProbe("ftp://127.0.0.1:21")


def test_deadline_ends_a_blocked_read():
    # A peer that never sends: recv would block for the socket timeout (30 s), the deadline ends it at 0.3 s.
    left, right = socket.socketpair()
    left.settimeout(30)
    deadline = Deadline(0.3)
    deadline.watch(left)
    started = time.monotonic()
    try:
        assert left.recv(10) == b""  # shut down: reads as end of stream
    finally:
        deadline.cancel()
        left.close()
        right.close()
    assert deadline.expired
    assert time.monotonic() - started < 5


def test_deadline_shuts_a_socket_watched_too_late_at_once():
    deadline = Deadline(0.01)
    time.sleep(0.2)
    left, right = socket.socketpair()
    try:
        deadline.watch(left)
        assert left.recv(10) == b""
    finally:
        left.close()
        right.close()


def test_a_cancelled_deadline_leaves_the_socket_alone():
    left, right = socket.socketpair()
    deadline = Deadline(0.1)
    deadline.watch(left)
    deadline.cancel()
    time.sleep(0.3)
    threading.Thread(target=right.sendall, args=(b"ok",)).start()
    try:
        left.settimeout(5)
        assert left.recv(10) == b"ok"
        assert not deadline.expired
    finally:
        left.close()
        right.close()

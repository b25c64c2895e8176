# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Probe an MLflow tracking server over HTTP and explain what is wrong with it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import Request, SSLValidationError

HEALTH_PATH = "/health"
VERSION_PATH = "/version"
# A read that needs the backend store and, unlike /health and /version, passes MLflow's Host check.
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"

# MLflow 3 answers a Host it does not allow with 403 and
# "Invalid Host header - possible DNS rebinding attack detected" (mlflow/server/security_utils.py).
INVALID_HOST_MARKER = "Invalid Host header"

STATUSES = (
    "ok",
    "unreachable",
    "timeout",
    "not_mlflow",
    "forbidden_host",
    "auth_required",
    "version_mismatch",
    "api_error",
    "tls_error",
)
# Configuration errors: a server that is still starting or being replaced does not produce them
# twice in a row, so waiting longer only delays the failure.
PERSISTENT_STATUSES = frozenset(("not_mlflow", "forbidden_host", "auth_required", "version_mismatch", "tls_error"))

# While nothing listens (refused, or closed unanswered by a port proxy) a probe costs the server nothing,
# so re-probe this often instead of every interval and notice a start within a tenth of a second.
QUICK_RETRY_S = 0.1

_VERSION_RE = re.compile(r"^v?\d+\.\d+[0-9A-Za-z.+-]*$")
_BODY_LIMIT = 65536
_EXCERPT = 200


class Unhealthy(Exception):
    """One probe found the server unhealthy; status is one of STATUSES."""

    def __init__(self, status, msg, quick_retry=False):
        super(Unhealthy, self).__init__(msg)
        self.status = status
        self.msg = msg
        self.quick_retry = quick_retry


def host_port(url):
    """Return 'host:port' of url, with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return "%s:%s" % (host, port)


def excerpt(text, limit=_EXCERPT):
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def not_mlflow_msg(url, what):
    port = host_port(url).rsplit(":", 1)[1]
    return (
        "Something else answers on port %s, not MLflow: %s. Check which process holds the port "
        "(ss -ltnp) and that url points at the tracking server (include --static-prefix if it uses one). "
        "On macOS the AirPlay Receiver holds port 5000; turn it off in System Settings > General > "
        "AirDrop & Handoff, or use another local port." % (port, what)
    )


def classify_error(exc, url, timeout):
    """Map a transport exception raised while fetching url to an Unhealthy."""
    reason = exc
    # urllib wraps errors raised while sending; errors raised while reading the answer come bare.
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
    where = host_port(url)
    if isinstance(reason, (ssl.SSLCertVerificationError, ssl.CertificateError, SSLValidationError)):
        return Unhealthy(
            "tls_error",
            "TLS certificate verification failed for %s: %s. Give the CA that signed the server certificate "
            "with ca_path, or set validate_certs=false only for a test server." % (url, reason),
        )
    if isinstance(reason, ssl.SSLError):
        return Unhealthy(
            "tls_error",
            "TLS handshake with %s failed: %s. Check that the server speaks TLS on this port (https:// in url "
            "only for a TLS endpoint)." % (where, reason),
        )
    if isinstance(reason, socket.timeout):
        return Unhealthy(
            "timeout",
            "%s did not answer within timeout=%s s. The server may be overloaded or its backend store slow; "
            "raise timeout, or wait_timeout if it is still starting." % (url, timeout),
        )
    if isinstance(reason, ConnectionRefusedError):
        return Unhealthy(
            "unreachable",
            "Nothing listens on %s (connection refused). Check `docker compose ps` in the store directory "
            "(e.g. /opt/mlflow) and the container logs (`docker compose logs mlflow-server`)." % where,
            quick_retry=True,
        )
    if isinstance(reason, ConnectionResetError):
        # http.client.RemoteDisconnected is one: docker-proxy accepts and closes while no container is behind it.
        return Unhealthy(
            "unreachable",
            "%s accepted the connection but closed it without an answer: the server is still starting, or "
            "a port proxy (docker-proxy) has no running container behind it. Check `docker compose ps` in the "
            "store directory (e.g. /opt/mlflow) and the container logs." % where,
            quick_retry=True,
        )
    if isinstance(reason, http.client.HTTPException):
        return Unhealthy("not_mlflow", not_mlflow_msg(url, "it does not speak HTTP (%r)" % reason))
    return Unhealthy("unreachable", "Cannot reach %s: %s." % (where, reason))


class HealthProbe(object):
    """Run one health probe (GET /health, /version and optionally an API read) against a server."""

    def __init__(
        self,
        url,
        timeout=10.0,
        validate_certs=True,
        ca_path=None,
        url_username=None,
        url_password=None,
        headers=None,
        host_header=None,
        expected_version=None,
        check_api=True,
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.expected_version = expected_version
        self.check_api = check_api
        headers = dict(headers or {})
        if host_header:
            headers = dict((k, v) for k, v in headers.items() if k.lower() != "host")
            headers["Host"] = host_header
        given_host = [v for k, v in headers.items() if k.lower() == "host"]
        # urllib sends the url's netloc when no Host header is given.
        self.sent_host = given_host[0] if given_host else urllib.parse.urlsplit(self.url).netloc.rsplit("@", 1)[-1]
        self.request = Request(
            headers=headers,
            timeout=timeout,
            validate_certs=validate_certs,
            ca_path=ca_path,
            url_username=url_username,
            url_password=url_password,
            # Up front, not after a 401 challenge: saves a round trip per request, and some proxies never challenge.
            force_basic_auth=bool(url_username),
        )

    def _get(self, path, latency, key):
        """GET path; return (http status, body text). Transport errors raise Unhealthy."""
        url = self.url + path
        start = time.monotonic()
        try:
            try:
                resp = self.request.get(url)
                code, body = resp.status, resp.read(_BODY_LIMIT)
            except urllib.error.HTTPError as e:
                # An error answer may come without a body to read.
                code, body = e.code, e.read(_BODY_LIMIT) if e.fp else b""
        except Exception as e:  # pylint: disable=broad-except
            # Any failure below HTTP (refused, reset, TLS, timeout, garbage) is a finding, not a crash.
            raise classify_error(e, url, self.timeout) from e
        finally:
            latency[key] = round((time.monotonic() - start) * 1000.0, 1)
        return code, body.decode("utf-8", "replace") if body else ""

    def _forbidden_host(self, body):
        return Unhealthy(
            "forbidden_host",
            "MLflow refused the Host header '%s' (403 \"%s\"). Add it, or a pattern such as '%s:*', to the "
            "server's allowed hosts: mlflow_server_allowed_hosts in the mlops.mlflow.server role, or "
            "`mlflow server --allowed-hosts`, which replaces MLflow's default list."
            % (self.sent_host, excerpt(body, 80), self.sent_host.rsplit(":", 1)[0]),
        )

    def _auth(self, url, code):
        if code == 401:
            return Unhealthy(
                "auth_required",
                "%s answered 401: the server requires a login. Set url_username and url_password." % url,
            )
        return Unhealthy(
            "auth_required",
            "%s answered 403: the user url_username is not permitted to read experiments. Grant it READ "
            "permission or use another account." % url,
        )

    def _check_health(self, latency):
        code, body = self._get(HEALTH_PATH, latency, "health")
        url = self.url + HEALTH_PATH
        if code == 200 and body.strip() == "OK":
            return
        if code == 401:
            raise self._auth(url, code)
        if code == 403 and INVALID_HOST_MARKER in body:
            raise self._forbidden_host(body)
        if code >= 500:
            raise Unhealthy("api_error", "%s answered HTTP %s: %s" % (url, code, excerpt(body)))
        what = "%s answered HTTP %s %r" % (url, code, excerpt(body, 80))
        raise Unhealthy("not_mlflow", not_mlflow_msg(self.url, what))

    def _check_version(self, latency):
        code, body = self._get(VERSION_PATH, latency, "version")
        url = self.url + VERSION_PATH
        if code == 401:
            raise self._auth(url, code)
        if code >= 500:
            raise Unhealthy("api_error", "%s answered HTTP %s: %s" % (url, code, excerpt(body)))
        version = body.strip()
        if code != 200 or not _VERSION_RE.match(version):
            raise Unhealthy(
                "not_mlflow",
                not_mlflow_msg(self.url, "%s answered HTTP %s %r, not a version" % (url, code, excerpt(body, 80))),
            )
        return version

    def _check_api(self, latency):
        code, body = self._get(API_PATH, latency, "api")
        url = self.url + API_PATH
        if code == 403 and INVALID_HOST_MARKER in body:
            raise self._forbidden_host(body)
        if code in (401, 403):
            raise self._auth(url, code)
        if code != 200:
            raise Unhealthy("api_error", "The API read %s failed with HTTP %s: %s" % (url, code, excerpt(body)))
        try:
            if not isinstance(json.loads(body), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise Unhealthy(
                "api_error", "The API read %s answered 200 but not with JSON: %s" % (url, excerpt(body))
            ) from e

    def probe(self):
        """Probe once; return a dict with healthy, status, version, latency_ms and msg."""
        latency = {"health": None, "version": None, "api": None}
        version = None
        try:
            self._check_health(latency)
            version = self._check_version(latency)
            if self.expected_version and version.lstrip("v") != self.expected_version.lstrip("v"):
                raise Unhealthy(
                    "version_mismatch",
                    "The server runs MLflow %s but %s is expected. Check the image tag the server runs and "
                    "recreate its container (`docker compose up -d` in the store directory)."
                    % (version, self.expected_version),
                )
            if self.check_api:
                self._check_api(latency)
        except Unhealthy as e:
            return dict(
                healthy=False,
                status=e.status,
                version=version,
                latency_ms=latency,
                msg=e.msg,
                quick_retry=e.quick_retry,
            )
        checked = "health, version and an API read" if self.check_api else "health and version"
        return dict(
            healthy=True,
            status="ok",
            version=version,
            latency_ms=latency,
            msg="MLflow %s at %s is healthy (%s answered)." % (version, self.url, checked),
        )


def wait_until_healthy(probe, wait_timeout, interval, sleep=time.sleep, clock=time.monotonic):
    """Probe until healthy or wait_timeout seconds pass, sleeping interval seconds between probes.

    Transient statuses (unreachable, timeout, api_error) are retried until the deadline; a refused or
    unanswered connection after QUICK_RETRY_S instead of interval. A status in PERSISTENT_STATUSES ends
    the wait when two probes in a row return it.
    Returns the last probe's dict plus attempts and waited_s.
    """
    start = clock()
    deadline = start + wait_timeout
    attempts = 0
    previous = None
    while True:
        attempts += 1
        result = probe.probe()
        quick_retry = result.pop("quick_retry", False)
        now = clock()
        status = result["status"]
        if result["healthy"]:
            break
        if now >= deadline:
            if attempts > 1:
                result["msg"] += " Gave up after %d attempts in %.1f s (wait_timeout=%s)." % (
                    attempts,
                    now - start,
                    wait_timeout,
                )
            break
        if status in PERSISTENT_STATUSES and status == previous:
            result["msg"] += (
                " Stopped waiting after %d attempts: the same answer twice; waiting will not fix it." % attempts
            )
            break
        previous = status
        sleep(min(min(interval, QUICK_RETRY_S) if quick_retry else interval, deadline - now))
    result["attempts"] = attempts
    result["waited_s"] = round(clock() - start, 3)
    return result

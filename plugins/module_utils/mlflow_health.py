# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Probe an MLflow tracking server over HTTP and explain what is wrong with it.

Requests go out through http.client on one connection each, not through urllib's opener: urllib's handlers
follow redirects, answer 401 challenges from whatever host a redirect reached, read ~/.netrc and apply socket
timeouts per read. Here a request never leaves the origin of url, sends credentials only there, never takes a
proxy for a loopback address, and ends at one deadline however slowly the server answers.
TLS contexts come from ansible.module_utils.urls (make_context), as for ansible.builtin.uri.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from ansible.module_utils.urls import SSLValidationError, basic_auth_header, get_user_agent, make_context

HEALTH_PATH = "/health"
VERSION_PATH = "/version"
# A read that needs the backend store and, unlike /health and /version, passes MLflow's Host check.
API_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
SERVER_INFO_PATH = "/api/3.0/mlflow/server-info"

# MLflow 3 answers a Host it does not allow with 403 and
# "Invalid Host header - possible DNS rebinding attack detected" (mlflow/server/security_utils.py).
INVALID_HOST_MARKER = "Invalid Host header"

SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}

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
    "redirect",
    # The module's ssh_tunnel did not open; no probe was made.
    "tunnel_failed",
)
# Configuration errors: a server that is still starting or being replaced does not produce them
# twice in a row, so waiting longer only delays the failure.
PERSISTENT_STATUSES = frozenset(
    ("not_mlflow", "forbidden_host", "auth_required", "version_mismatch", "tls_error", "redirect")
)

# While nothing listens (refused, or closed unanswered by a port proxy) a probe costs the server nothing,
# so re-probe this often instead of every interval and notice a start within a tenth of a second.
QUICK_RETRY_S = 0.1

_VERSION_RE = re.compile(r"^v?\d+\.\d+[0-9A-Za-z.+-]*$")
_BODY_LIMIT = 65536
_EXCERPT = 200


class Unhealthy(Exception):
    """One probe found the server unhealthy; status is one of STATUSES."""

    def __init__(self, status: str, msg: str, quick_retry: bool = False) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.quick_retry = quick_retry


def url_error(url: str) -> str | None:
    """Return why url cannot be probed, as a message naming the option, or None when it can.

    The message never repeats url, so it cannot echo credentials written into it.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port_error = None
        try:
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
        except ValueError as e:
            port_error = str(e)
    except ValueError as e:
        return f"url is not a valid URL ({e}). Give the tracking server's base URL, such as http://127.0.0.1:5000."
    if parts.scheme not in SCHEMES or "://" not in url:
        got = "no scheme" if "://" not in url else f"the scheme '{parts.scheme}'"
        return (
            f"url must be an http:// or https:// URL, such as http://127.0.0.1:5000, but it has {got}. "
            "Only the schemes http and https are allowed."
        )
    if "@" in parts.netloc:
        return (
            "url must not contain credentials (user:password@host). Set url_username and url_password instead: "
            "they are sent only to the server in url and the password is never logged or returned."
        )
    if not parts.hostname:
        return "url has no host. Give the tracking server's base URL, such as http://127.0.0.1:5000."
    if port_error:
        return f"url has an invalid port ({port_error}). Give a port from 1 to 65535, such as http://127.0.0.1:5000."
    if parts.query or parts.fragment:
        return "url must be the server's base URL without ?query or #fragment, such as http://127.0.0.1:5000."
    return None


def url_secrets(url: str) -> list[str]:
    """The credentials written into url (user:password@ or token@), as written and percent-decoded.

    The module adds them to its no_log values, so that Ansible masks them in the result it returns.
    Works on strings urlsplit cannot read as URLs, such as user:password@host:5000 without a scheme.
    """
    authority = re.split(r"[/?#]", url.split("://", 1)[-1], maxsplit=1)[0]
    if "@" not in authority:
        return []
    userinfo = authority.rsplit("@", 1)[0]
    secret = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
    return sorted({s for s in (secret, urllib.parse.unquote(secret)) if s})


def redact_url(url: str) -> str:
    """url without any user:password@ part, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of url: where a request to url goes, with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, (parts.hostname or "").rstrip("."), parts.port or _DEFAULT_PORTS.get(parts.scheme))


def host_port(url: str) -> str:
    """Return 'host:port' of url, with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


def is_loopback(host: str | None) -> bool:
    """Whether host names this machine's loopback interface: localhost, 127.0.0.0/8 (any form) or ::1."""
    host = (host or "").strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:
            # Short and numeric IPv4 forms the resolver accepts too, such as 127.1 or 2130706433.
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def proxy_for(url: str, use_proxy: bool = True) -> str | None:
    """The proxy URL a request to url goes through, or None to connect directly.

    None when use_proxy is false, when url's host is a loopback address (a proxy elsewhere cannot reach this
    machine's loopback, and an SSH tunnel ends there), or when no_proxy exempts the host. Otherwise the
    <scheme>_proxy environment variable, as urllib reads it.
    """
    parts = urllib.parse.urlsplit(url)
    if not use_proxy or is_loopback(parts.hostname):
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def excerpt(text: str | None, limit: int = _EXCERPT) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[:limit] + "..."


def not_mlflow_msg(url: str, what: str) -> str:
    port = host_port(url).rsplit(":", 1)[1]
    return (
        f"Something else answers on port {port}, not MLflow: {what}. Check which process holds the port "
        "(ss -ltnp) and that url points at the tracking server (include --static-prefix if it uses one). "
        "On macOS the AirPlay Receiver holds port 5000; turn it off in System Settings > General > "
        "AirDrop & Handoff, or use another local port."
    )


def timeout_msg(url: str, timeout: float) -> str:
    return (
        f"{url} did not answer in full within timeout={timeout} s. The server may be overloaded or its backend store "
        "slow; raise timeout, or wait_timeout if it is still starting."
    )


def classify_error(exc: BaseException, url: str, timeout: float, proxy: str | None = None) -> Unhealthy:
    """Map a transport exception raised while fetching url to an Unhealthy.

    proxy is 'host:port' of the proxy the request went through, if any.
    """
    reason = exc
    # urllib wraps errors raised while sending; errors raised while reading the answer come bare.
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
    where = host_port(url)
    if isinstance(reason, (ssl.SSLCertVerificationError, ssl.CertificateError, SSLValidationError)):
        return Unhealthy(
            "tls_error",
            f"TLS certificate verification failed for {url}: {reason}. Give the CA that signed the server "
            "certificate with ca_path, or set validate_certs=false only for a test server.",
        )
    if isinstance(reason, ssl.SSLError):
        return Unhealthy(
            "tls_error",
            f"TLS handshake with {where} failed: {reason}. Check that the server speaks TLS on this port "
            "(https:// in url only for a TLS endpoint).",
        )
    if isinstance(reason, socket.timeout):
        return Unhealthy("timeout", timeout_msg(url, timeout))
    if proxy and isinstance(reason, (OSError, http.client.HTTPException)):
        return Unhealthy(
            "unreachable",
            f"Cannot reach {where} through the proxy {proxy} (from the proxy environment variables): {reason}. "
            "Fix the proxy, or set use_proxy=false or no_proxy to reach the server directly.",
        )
    if isinstance(reason, ConnectionRefusedError):
        return Unhealthy(
            "unreachable",
            f"Nothing listens on {where} (connection refused). Check `docker compose ps` in the store directory "
            "(e.g. /opt/mlflow) and the container logs (`docker compose logs mlflow-server`).",
            quick_retry=True,
        )
    if isinstance(reason, ConnectionResetError):
        # http.client.RemoteDisconnected is one: docker-proxy accepts and closes while no container is behind it.
        return Unhealthy(
            "unreachable",
            f"{where} accepted the connection but closed it without an answer: the server is still starting, or "
            "a port proxy (docker-proxy) has no running container behind it. Check `docker compose ps` in the "
            "store directory (e.g. /opt/mlflow) and the container logs.",
            quick_retry=True,
        )
    if isinstance(reason, http.client.HTTPException):
        return Unhealthy("not_mlflow", not_mlflow_msg(url, f"it does not speak HTTP ({reason!r})"))
    return Unhealthy("unreachable", f"Cannot reach {where}: {reason}.")


def _shutdown(sock: socket.socket) -> None:
    try:
        # socket.socket's own shutdown, also for an SSLSocket: it wakes a recv blocked in another thread and,
        # unlike SSLSocket.shutdown, leaves the TLS object to that thread.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or not connected yet


class Deadline:
    """The end of one HTTP request, however slowly the server answers.

    Socket timeouts apply to each read, so a server that trickles a byte at a time never trips them. A timer
    shuts down the socket being used when the time is up instead, which ends a blocked connect, send or
    read at once; expired then tells the caller why the request failed.
    """

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.expired = False
        self._sock = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(self.end - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut sock down when the time is up (at once if it is up already)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _connect(address: tuple, deadline: Deadline) -> socket.socket:
    """Like socket.create_connection, but every socket tried is watched by deadline."""
    host, port = address[:2]
    error = None
    for family, kind, proto, _name, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        deadline.watch(sock)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(sockaddr)
            return sock
        except OSError as e:
            error = e
            sock.close()
    raise error or OSError(f"no address found for {host}")


def _read_body(resp: http.client.HTTPResponse) -> bytes:
    """The whole body of resp, up to _BODY_LIMIT bytes; a single read may return only what has arrived."""
    chunks = []
    size = 0
    while size < _BODY_LIMIT:
        chunk = resp.read(_BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Connection(http.client.HTTPConnection):
    """One HTTP connection, TLS when context is given, whose sockets a Deadline watches.

    http.client never follows redirects and never adds credentials; a proxy's CONNECT tunnel is set with
    set_tunnel as for HTTPSConnection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        deadline: Deadline,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._deadline = deadline
        self._tls_context = context
        self._server_hostname = server_hostname or host
        self._create_connection = self._connect_watched

    def _connect_watched(self, address: tuple, *args, **kwargs) -> socket.socket:
        return _connect(address, self._deadline)

    def connect(self) -> None:
        super().connect()  # TCP, then the proxy's CONNECT tunnel if one is set
        if self._tls_context is not None:
            sock = self._tls_context.wrap_socket(
                self.sock, server_hostname=self._server_hostname, do_handshake_on_connect=False
            )
            self.sock = sock
            self._deadline.watch(sock)
            sock.settimeout(self._deadline.remaining())
            sock.do_handshake()


class HealthProbe:
    """Run one health probe (GET /health, /version and optionally an API read) against a server."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        validate_certs: bool = True,
        ca_path: str | None = None,
        url_username: str | None = None,
        url_password: str | None = None,
        headers: dict | None = None,
        host_header: str | None = None,
        expected_version: str | None = None,
        check_api: bool = True,
        use_proxy: bool = True,
        allowed_hosts_setting: str | None = None,
    ) -> None:
        """allowed_hosts_setting: where the deployment sets MLflow's allowed hosts (a role variable, say),
        named in a forbidden_host message before `mlflow server --allowed-hosts`."""
        error = url_error(url)
        if error:
            raise ValueError(error)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.expected_version = expected_version
        self.check_api = check_api
        self.allowed_hosts_setting = allowed_hosts_setting
        self.origin = origin(self.url)
        self.base_path = urllib.parse.urlsplit(self.url).path.rstrip("/")
        self.username = url_username
        self._password = url_password
        headers = dict(headers or {})
        if host_header:
            headers = {k: v for k, v in headers.items() if k.lower() != "host"}
            headers["Host"] = host_header
        given_host = [v for k, v in headers.items() if k.lower() == "host"]
        # Without a Host header, send the url's host[:port] as written, as urllib did.
        self.sent_host = given_host[0] if given_host else urllib.parse.urlsplit(self.url).netloc
        if url_username:
            # url_username wins over an Authorization header given in headers, as in ansible.builtin.uri.
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        self.given_authorization = any(k.lower() == "authorization" for k in headers)
        headers = {k: v for k, v in headers.items() if k.lower() != "host"}
        self.headers = dict({"User-Agent": get_user_agent(), "Connection": "close"}, **headers)
        self.headers["Host"] = self.sent_host
        self.context = (
            make_context(cafile=ca_path, validate_certs=validate_certs) if self.origin[0] == "https" else None
        )
        self.proxy = None
        self._proxy_headers = {}
        proxy = proxy_for(self.url, use_proxy)
        if proxy:
            self._set_proxy(proxy)

    def _set_proxy(self, proxy: str) -> None:
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        try:
            port = parts.port or 80
        except ValueError:
            port = None
        if parts.scheme != "http" or not parts.hostname or not port:
            raise ValueError(
                f"The proxy set for {self.origin[0]} URLs in the environment ({self.origin[0]}_proxy) is not an "
                "http://host:port URL. Fix it, or set use_proxy=false or no_proxy to reach the server directly."
            )
        self.proxy = (parts.hostname, port)
        if parts.username:
            password = urllib.parse.unquote(parts.password or "")
            self._proxy_headers["Proxy-Authorization"] = basic_auth_header(
                urllib.parse.unquote(parts.username), password
            ).decode("ascii")

    @property
    def proxy_where(self) -> str | None:
        if not self.proxy:
            return None
        host = f"[{self.proxy[0]}]" if ":" in self.proxy[0] else self.proxy[0]
        return f"{host}:{self.proxy[1]}"

    def auth_headers_for(self, target: str) -> dict[str, str]:
        """The Authorization header for a request to target: only for the exact origin of url."""
        if not self.username or origin(target) != self.origin:
            return {}
        return {"Authorization": basic_auth_header(self.username, self._password).decode("latin-1")}

    def _fetch(self, path: str, deadline: Deadline) -> tuple[int, str | None, bytes]:
        """GET url + path on one new connection; return (status code, Location header, body bytes)."""
        scheme, host, port = self.origin
        target = self.url + path
        headers = dict(self.headers, **self.auth_headers_for(target))
        if self.proxy and scheme == "https":
            conn = _Connection(self.proxy[0], self.proxy[1], deadline, self.context, server_hostname=host)
            conn.set_tunnel(host, port, headers=self._proxy_headers)
            request_target = self.base_path + path
        elif self.proxy:
            conn = _Connection(self.proxy[0], self.proxy[1], deadline)
            headers.update(self._proxy_headers)
            request_target = target  # an HTTP proxy takes the absolute URL
        else:
            conn = _Connection(host, port, deadline, self.context, server_hostname=host)
            request_target = self.base_path + path
        try:
            conn.request("GET", request_target, headers=headers)
            resp = conn.getresponse()
            body = _read_body(resp)
            if deadline.expired:
                # A shut-down socket reads as the end of the answer: it was cut off, not complete.
                raise socket.timeout("the answer was not complete when the time was up")
            if resp.length and len(body) < _BODY_LIMIT:
                raise http.client.IncompleteRead(body, resp.length)
            return resp.status, resp.getheader("Location"), body
        finally:
            conn.close()

    def _get(self, path: str, latency: dict, key: str) -> tuple[int, str]:
        """GET path; return (http status, body text). Transport errors and redirects raise Unhealthy."""
        url = self.url + path
        start = time.monotonic()
        deadline = Deadline(self.timeout)
        try:
            code, location, body = self._fetch(path, deadline)
        except Exception as e:  # pylint: disable=broad-except
            # Any failure below HTTP (refused, reset, TLS, timeout, garbage) is a finding, not a crash.
            if deadline.expired:
                raise Unhealthy("timeout", timeout_msg(url, self.timeout)) from e
            raise classify_error(e, url, self.timeout, proxy=self.proxy_where) from e
        finally:
            deadline.cancel()
            latency[key] = round((time.monotonic() - start) * 1000.0, 1)
        if 300 <= code < 400:
            raise self._redirect(url, code, location)
        if code == 407:
            raise Unhealthy(
                "auth_required",
                f"The proxy {self.proxy_where} answered 407: it requires a login. Put the user and password in the "
                "proxy URL (http_proxy), or set use_proxy=false or no_proxy to reach the server directly.",
            )
        return code, self._scrub(body.decode("utf-8", "replace")) if body else ""

    def _scrub(self, text: str) -> str:
        """text with the credentials masked, should a server echo them in an answer that msg quotes."""
        for secret in (self._password, (self.auth_headers_for(self.url).get("Authorization") or "")[6:]):
            if secret:
                text = text.replace(secret, "********")
        return text

    def _redirect(self, url: str, code: int, location: str | None) -> Unhealthy:
        if location:
            # A relative Location is resolved against the request, as a client following it would.
            where = f"to {excerpt(redact_url(urllib.parse.urljoin(url, location.strip())), 120)}"
        else:
            where = "without a Location"
        return Unhealthy(
            "redirect",
            f"{url} answered {code} {where}; the module does not follow redirects (they could lead the credentials "
            "or the probe elsewhere): point url at the server itself, e.g. the address the redirect names if it is "
            "yours.",
        )

    def _forbidden_host(self, body: str) -> Unhealthy:
        pattern = self.sent_host.rsplit(":", 1)[0]
        setting = f"{self.allowed_hosts_setting}, or " if self.allowed_hosts_setting else ""
        return Unhealthy(
            "forbidden_host",
            f"MLflow refused the Host header '{self.sent_host}' (403 \"{excerpt(body, 80)}\"). Add it, or a pattern "
            f"such as '{pattern}:*', to the server's allowed hosts: {setting}`mlflow server --allowed-hosts`, which "
            "replaces MLflow's default list.",
        )

    def _auth(self, url: str, code: int) -> Unhealthy:
        if code == 401 and self.username:
            return Unhealthy(
                "auth_required",
                f"{url} answered 401 to user '{self.username}': the password is wrong or the user does not "
                "exist. Check url_username and url_password against the server's users (MLflow basic-auth).",
            )
        if code == 401 and self.given_authorization:
            return Unhealthy(
                "auth_required",
                f"{url} answered 401 to the Authorization header given in headers: the credentials are wrong. "
                "Fix that header, or set url_username and url_password instead.",
            )
        if code == 401:
            return Unhealthy(
                "auth_required",
                f"{url} answered 401 without credentials: the server requires a login. Set url_username and "
                "url_password.",
            )
        if self.username:
            return Unhealthy(
                "auth_required",
                f"{url} answered 403: user '{self.username}' is not permitted to read experiments. Grant it "
                "READ permission or use another account.",
            )
        return Unhealthy(
            "auth_required",
            f"{url} answered 403 without credentials: the server refuses anonymous reads. Set url_username and "
            "url_password for an account permitted to read experiments.",
        )

    def _check_health(self, latency: dict) -> None:
        code, body = self._get(HEALTH_PATH, latency, "health")
        url = self.url + HEALTH_PATH
        if code == 200 and body.strip() == "OK":
            return
        if code == 401:
            raise self._auth(url, code)
        if code == 403 and INVALID_HOST_MARKER in body:
            raise self._forbidden_host(body)
        if code >= 500:
            raise Unhealthy("api_error", f"{url} answered HTTP {code}: {excerpt(body)}")
        what = f"{url} answered HTTP {code} {excerpt(body, 80)!r}"
        raise Unhealthy("not_mlflow", not_mlflow_msg(self.url, what))

    def _check_version(self, latency: dict) -> str:
        code, body = self._get(VERSION_PATH, latency, "version")
        url = self.url + VERSION_PATH
        if code == 401:
            raise self._auth(url, code)
        if code >= 500:
            raise Unhealthy("api_error", f"{url} answered HTTP {code}: {excerpt(body)}")
        version = body.strip()
        if code != 200 or not _VERSION_RE.match(version):
            raise Unhealthy(
                "not_mlflow",
                not_mlflow_msg(self.url, f"{url} answered HTTP {code} {excerpt(body, 80)!r}, not a version"),
            )
        return version

    def _check_api(self, latency: dict) -> None:
        code, body = self._get(API_PATH, latency, "api")
        url = self.url + API_PATH
        if code == 403 and INVALID_HOST_MARKER in body:
            raise self._forbidden_host(body)
        if code in (401, 403):
            raise self._auth(url, code)
        if code != 200:
            raise Unhealthy("api_error", f"The API read {url} failed with HTTP {code}: {excerpt(body)}")
        try:
            if not isinstance(json.loads(body), dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise Unhealthy("api_error", f"The API read {url} answered 200 but not with JSON: {excerpt(body)}") from e

    def _workspaces_enabled(self, version: str) -> bool | None:
        """Whether MLflow runs with workspaces (GET server-info, which needs no login); None where it cannot
        say (MLflow 2 has no such endpoint) or the answer is unreadable. Never a reason to call MLflow unhealthy."""
        major = version.lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < 3:
            return None
        try:
            code, body = self._get(SERVER_INFO_PATH, {}, "server_info")
            enabled = json.loads(body).get("workspaces_enabled") if code == 200 else None
        except (Unhealthy, ValueError, AttributeError):
            return None
        return enabled if isinstance(enabled, bool) else None

    def probe(self) -> dict:
        """Probe once; return a dict with healthy, status, version, workspaces_enabled, latency_ms and msg."""
        latency = {"health": None, "version": None, "api": None}
        version = None
        try:
            self._check_health(latency)
            version = self._check_version(latency)
            if self.expected_version and version.lstrip("v") != self.expected_version.lstrip("v"):
                raise Unhealthy(
                    "version_mismatch",
                    f"The server runs MLflow {version} but {self.expected_version} is expected. Check the image tag "
                    "the server runs and recreate its container (`docker compose up -d` in the store directory).",
                )
            if self.check_api:
                self._check_api(latency)
        except Unhealthy as e:
            return dict(
                healthy=False,
                status=e.status,
                version=version,
                workspaces_enabled=None,
                latency_ms=latency,
                msg=e.msg,
                quick_retry=e.quick_retry,
            )
        checked = "health, version and an API read" if self.check_api else "health and version"
        return dict(
            healthy=True,
            status="ok",
            version=version,
            workspaces_enabled=self._workspaces_enabled(version),
            latency_ms=latency,
            msg=f"MLflow {version} at {self.url} is healthy ({checked} answered).",
        )


def wait_until_healthy(
    probe: HealthProbe,
    wait_timeout: float,
    interval: float,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
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
                result["msg"] += (
                    f" Gave up after {attempts} attempts in {now - start:.1f} s (wait_timeout={wait_timeout})."
                )
            break
        if status in PERSISTENT_STATUSES and status == previous:
            result["msg"] += (
                f" Stopped waiting after {attempts} attempts: the same answer twice; waiting will not fix it."
            )
            break
        previous = status
        sleep(min(min(interval, QUICK_RETRY_S) if quick_retry else interval, deadline - now))
    result["attempts"] = attempts
    result["waited_s"] = round(clock() - start, 3)
    return result

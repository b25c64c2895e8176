#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: mlflow_health
short_description: Judge whether an MLflow tracking server really works, optionally waiting for it
version_added: 0.1.0
description:
  - Probes an MLflow tracking server with C(GET /health) (MLflow answers V(OK)), C(GET /version) (the plain-text
    MLflow version) and, when O(check_api=true), a read through the REST API
    (C(GET /api/2.0/mlflow/experiments/search?max_results=1)).
  - The API read proves that the backend store answers and that the server accepts the Host header sent.
    MLflow 3 exempts C(/health) and C(/version) from its allowed-hosts check, so only the API read catches a
    Host header the server refuses.
  - With O(wait_timeout) above V(0) the module probes again every O(interval) seconds until the server is
    healthy or O(wait_timeout) seconds have passed.
  - While nothing answers at all (connection refused, or closed without an answer as C(docker-proxy) does while
    no container runs), it probes every 0.1 seconds instead, since such a probe costs the server nothing. So it
    notices a starting server within about 0.1 seconds, whatever the O(interval).
  - C(unreachable), C(timeout) and C(api_error) answers are retried until O(wait_timeout), since a starting or
    restarting server gives them. C(not_mlflow), C(forbidden_host), C(auth_required), C(version_mismatch),
    C(tls_error) and C(redirect) are configuration errors that waiting does not fix, so the wait ends early when
    two probes in a row give the same one of them. One such answer alone does not end it, because a server being
    replaced may give it once.
  - Every result is reported as facts (RV(status), RV(version), RV(latency_ms)); the only prose is RV(msg), which
    names what to fix.
  - The module never follows a redirect. A C(3xx) answer is reported as RV(status=redirect) with its
    C(Location) in RV(msg), so neither the probe nor the credentials end up at another server.
  - Credentials are sent only to the scheme, host and port of O(url), and the password is never returned.
  - Each HTTP request must be done within O(timeout), from connecting to the last byte of the answer, so a
    server that answers slowly, byte by byte, cannot hold the module longer.
  - The module only reads, so it never reports a change.
author:
  - mlops.mlflow developers (@mlops)
extends_documentation_fragment:
  - mlops.mlflow.attributes
  - mlops.mlflow.attributes.info_module
attributes:
  check_mode:
    details:
      - The module only reads, so it probes the server in check mode too.
options:
  url:
    description:
      - Base URL of the tracking server, including the C(--static-prefix) if the server uses one.
      - Only C(http://) and C(https://) URLs with a host are accepted; any other scheme, or none, fails the
        task before any request is made. So does a C(?query) or C(#fragment).
      - Credentials in the URL (C(user:password@host)) are refused, and the password is masked in the result;
        use O(url_username) and O(url_password) instead.
    type: str
    default: http://127.0.0.1:5000
  timeout:
    description:
      - Seconds each single HTTP request may take in total, from connecting (after the name lookup) to the last
        byte of the answer. Fractions are allowed.
      - A deadline, not a per-read timeout, so a server that trickles its answer cannot stretch it.
    type: float
    default: 10
  wait_timeout:
    description:
      - Total seconds to wait for the server to become healthy.
      - V(0) probes once.
    type: float
    default: 0
  interval:
    description:
      - Seconds to sleep between two probes while waiting.
      - While the connection is refused or closed without an answer, the module sleeps only 0.1 seconds
        (or O(interval) if smaller).
    type: float
    default: 1
  validate_certs:
    description:
      - Verify the server's TLS certificate for C(https) URLs.
      - Set to V(false) only for a test server with a self-signed certificate; prefer O(ca_path).
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the server's certificate.
    type: path
  url_username:
    description:
      - User name for a server run with C(--app-name basic-auth) or behind a proxy with basic authentication.
      - The credentials are sent with the first request (force_basic_auth) instead of after a 401 challenge,
        which saves a round trip per request and also works with proxies that never challenge.
      - They are sent only to the scheme, host and port of O(url); redirects are never followed.
      - Takes precedence over an C(Authorization) entry in O(headers).
      - When the server answers 401 with them, RV(status) is V(auth_required) and RV(msg) names the user.
    type: str
  url_password:
    description:
      - Password for O(url_username).
    type: str
  headers:
    description:
      - Extra HTTP headers to send with every request.
    type: dict
  host_header:
    description:
      - Host header to send instead of the one derived from O(url).
      - Use C(localhost:<port>) to probe the way an SSH tunnel client reaches the server, so a server whose
        allowed hosts (C(--allowed-hosts)) exclude it fails here with RV(status=forbidden_host) and not later
        in the user's client.
      - Takes precedence over a C(Host) entry in O(headers).
    type: str
  expected_version:
    description:
      - MLflow version the server must run, for example V(3.17.2). A leading V(v) is ignored.
      - When the server runs another version, RV(status) is V(version_mismatch).
    type: str
  use_proxy:
    description:
      - Send requests through the proxy named by the C(http_proxy) or C(https_proxy) environment variable of the
        target host, unless C(no_proxy) exempts the host. As in M(ansible.builtin.uri).
      - A loopback O(url) (C(localhost), C(127.0.0.0/8), C(::1)) never goes through a proxy, whatever this option
        says; a proxy elsewhere cannot reach this machine's loopback, where an SSH tunnel also ends.
      - Only C(http://) proxies are supported; C(https) URLs go through them with C(CONNECT), so the proxy sees
        no credentials. For an C(http) URL the proxy relays the request, C(Authorization) header included.
    type: bool
    default: true
  check_api:
    description:
      - Also read through the REST API (C(GET /api/2.0/mlflow/experiments/search?max_results=1)).
      - Only this read shows that the backend store answers and that the Host header is allowed.
    type: bool
    default: true
  ssh_tunnel:
    description:
      - Open an SSH tunnel before the probe and close it after, as a member does with C(ssh <host> -fN). The
        C(LocalForward) of that C(Host) block in the ssh config must carry O(url).
      - ssh runs as the user the module runs as (use C(become_user) for a member), with C(BatchMode=yes) (a
        password or passphrase prompt fails instead of hanging) and a control socket in a new private temporary
        directory, so exactly this tunnel is closed again, whatever happens in between.
      - ssh gets C(ExitOnForwardFailure=yes), so a local port that another process holds fails the tunnel instead of
        sending the probe and its credentials to that process.
      - When the tunnel does not open, RV(status) is V(tunnel_failed) and RV(msg) carries ssh's own message
        (for example C(Permission denied) or C(Could not request local forwarding)).
    type: dict
    suboptions:
      host:
        description: The C(Host) alias of the ssh config. A name that starts with C(-) is refused.
        type: str
        required: true
      config:
        description: The ssh config file (C(ssh -F)); by default the user's C(~/.ssh/config).
        type: path
      connect_timeout:
        description: Seconds ssh may take to connect (C(ConnectTimeout)).
        type: int
        default: 15
  client_python:
    description:
      - A Python interpreter on the host the module runs on (a name on C(PATH), or a path), whose C(mlflow) client to
        compare with the server's version, as RV(client) reports. A client a major version apart from the server is
        not meant for it (mlflow#16215). Run as a member (C(become_user)), this is the member's own interpreter.
      - The version is read from the interpreter's installed package metadata, without importing mlflow.
      - Empty for no comparison. The comparison never makes the server unhealthy.
    type: str
    default: ''
    version_added: 0.6.0
  fail_on_unhealthy:
    description:
      - Fail the task when the server is not healthy.
      - With V(false) the task succeeds and reports RV(healthy=false) with RV(status) and RV(msg), so a
        playbook can decide itself.
    type: bool
    default: true
notes:
  - Requests are made with Python's C(http.client), one connection per request, with TLS settings from
    C(ansible.module_utils.urls). Unlike M(ansible.builtin.uri) the module reads no C(~/.netrc), never follows
    redirects and never answers an authentication challenge from anywhere but O(url).
seealso:
  - module: ansible.builtin.uri
  - name: MLflow tracking server
    description: How to run the tracking server, including C(--allowed-hosts) and C(--app-name basic-auth).
    link: https://mlflow.org/docs/latest/self-hosting/architecture/tracking-server
"""

EXAMPLES = r"""
---
- name: Wait until MLflow answers healthy through its API (up to 2 minutes)
  mlops.mlflow.mlflow_health:
    url: http://127.0.0.1:5000
    wait_timeout: 120
    interval: 2

- name: Probe as a tunnel client does, so a too-narrow allowed-hosts list shows now
  mlops.mlflow.mlflow_health:
    url: http://127.0.0.1:5000
    host_header: localhost:5000
    expected_version: 3.17.2

- name: Check a server that runs MLflow's basic-auth app, behind TLS with an own CA
  mlops.mlflow.mlflow_health:
    url: https://mlflow.example.org
    ca_path: /etc/ssl/certs/team-ca.pem
    url_username: monitor
    url_password: "{{ vault_mlflow_monitor_password }}"

- name: Check MLflow as alice does, through the tunnel her ssh config describes
  mlops.mlflow.mlflow_health:
    url: http://127.0.0.1:5000
    host_header: localhost:5000
    wait_timeout: 30
    ssh_tunnel:
      host: mlflowserver
  become: true
  become_user: alice

- name: Record the state without failing
  mlops.mlflow.mlflow_health:
    fail_on_unhealthy: false
  register: mlflow_state

- name: Show why MLflow is not healthy
  ansible.builtin.debug:
    msg: "{{ mlflow_state.status }}: {{ mlflow_state.msg }}"
  when: not mlflow_state.healthy
"""

RETURN = r"""
healthy:
  description: Whether every probe passed.
  returned: always
  type: bool
  sample: true
status:
  description:
    - V(ok) when healthy, otherwise what was wrong.
    - V(unreachable) nothing listens, or the connection is closed without an answer.
    - V(timeout) a request, including reading its whole answer, took longer than O(timeout).
    - V(not_mlflow) something other than MLflow answers.
    - V(forbidden_host) MLflow refused the Host header (allowed hosts).
    - V(auth_required) credentials are missing, wrong or lack permission (401, or 403 on the API read).
    - V(version_mismatch) the server runs another version than O(expected_version).
    - V(api_error) the server answered with an HTTP error, or the API read failed.
    - V(tls_error) the TLS handshake or certificate verification failed.
    - V(redirect) the server answered with a redirect (C(3xx)), which the module does not follow.
    - V(tunnel_failed) the tunnel of O(ssh_tunnel) did not open.
  returned: always
  type: str
  sample: ok
version:
  description: MLflow version the server reports, or V(null) if it was not read.
  returned: always
  type: str
  sample: 3.17.2
client:
  description:
    - With O(client_python), that interpreter's mlflow client beside the server's version. V(null) without it, or
      when the server is not healthy.
  returned: always
  type: dict
  version_added: 0.6.0
  contains:
    python:
      description: The interpreter, as found on C(PATH).
      type: str
    version:
      description: Its mlflow version, or V(null) when it has none (or the interpreter was not found).
      type: str
    fits:
      description: Whether it has mlflow of the server's major version.
      type: bool
    fix:
      description: The command that gives it a client of the server's major version, or V(null) when it fits.
      type: str
  sample: {"python": "/usr/bin/python3", "version": "2.22.1", "fits": false,
           "fix": "/usr/bin/python3 -m pip install 'mlflow>=3.17.2,<4'"}
workspaces_enabled:
  description:
    - Whether MLflow runs with workspaces (lab groups), as C(GET /api/3.0/mlflow/server-info) says without a login.
    - V(null) when the server is not healthy, runs MLflow 2 (which has no workspaces) or does not say.
  returned: always
  type: bool
  sample: true
  version_added: 0.6.0
latency_ms:
  description: Milliseconds each request of the last probe took; V(null) for a request not made.
  returned: always
  type: dict
  contains:
    health:
      description: C(GET /health).
      type: float
      returned: always
    version:
      description: C(GET /version).
      type: float
      returned: always
    api:
      description: The API read.
      type: float
      returned: always
  sample: {"health": 2.1, "version": 1.4, "api": 9.8}
attempts:
  description: Number of probes made.
  returned: always
  type: int
  sample: 1
waited_s:
  description: Seconds from the first probe to the result.
  returned: always
  type: float
  sample: 0.012
url:
  description: Base URL probed (O(url) without a trailing slash).
  returned: always
  type: str
  sample: http://127.0.0.1:5000
msg:
  description: What was found, and on failure what to fix.
  returned: always
  type: str
  sample: MLflow 3.17.2 at http://127.0.0.1:5000 is healthy (health, version and an API read answered).
"""

# ansible-test (validate-modules) wants imports below DOCUMENTATION, EXAMPLES and RETURN.
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.mlops.mlflow.plugins.module_utils.mlflow_health import (  # noqa: E402
    HealthProbe,
    url_error,
    url_secrets,
    wait_until_healthy,
)

# Where most servers this module checks get their allowed hosts; a forbidden_host message names it.
ALLOWED_HOSTS_SETTING = "mlflow_server_allowed_hosts in the mlops.mlflow.server role"


def probe_through_tunnel(module: AnsibleModule, tunnel: dict, probe: HealthProbe) -> dict:
    """Open `ssh -fN <host>` with a private control socket, probe, and close exactly that tunnel."""
    ssh = [module.get_bin_path("ssh", required=True)] + (["-F", tunnel["config"]] if tunnel["config"] else [])
    scratch = tempfile.mkdtemp(prefix="mlflow-tunnel-")
    control = ["-o", f"ControlPath={scratch}/ctl"]
    try:
        options = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={tunnel['connect_timeout']}",
            "-o",
            "ControlMaster=yes",
            # A local port that something else holds fails the tunnel, so the probe (and its
            # credentials) never goes to whatever holds it, whatever the ssh config says.
            "-o",
            "ExitOnForwardFailure=yes",
        ]
        rc, out, err = module.run_command(ssh + options + control + ["-fN", "--", tunnel["host"]])
        if rc != 0:
            return dict(
                healthy=False,
                status="tunnel_failed",
                version=None,
                workspaces_enabled=None,
                latency_ms=dict(health=None, version=None, api=None),
                attempts=0,
                waited_s=0.0,
                msg=f"The tunnel `ssh {tunnel['host']} -fN` did not open (rc {rc}): "
                + (" / ".join((err or out).strip().splitlines()) or "no message"),
            )
        try:
            return wait_until_healthy(probe, module.params["wait_timeout"], module.params["interval"])
        finally:
            module.run_command(ssh + control + ["-O", "exit", "--", tunnel["host"]])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# The installed mlflow's version from the package metadata: importing mlflow takes seconds.
_CLIENT_VERSION = (
    "import importlib.metadata as m\n"
    "try:\n    print(m.version('mlflow'))\n"
    "except m.PackageNotFoundError:\n    print('')\n"
)


def client_fit(module: AnsibleModule, python: str, server_version: str) -> dict:
    """The mlflow client of that interpreter beside the server's version: {python, version, fits, fix}."""
    found = python if os.path.isabs(python) else module.get_bin_path(python)
    version = None
    if found and os.access(found, os.X_OK):
        rc, out, _err = module.run_command([found, "-c", _CLIENT_VERSION])
        version = out.strip() if rc == 0 and out.strip() else None
    server = server_version.lstrip("v")
    major = server.split(".")[0]
    fits = version is not None and version.split(".")[0] == major
    fix = None
    if not fits:
        upper = int(major) + 1 if major.isdigit() else None
        spec = f"mlflow>={server},<{upper}" if upper else f"mlflow=={server}"
        fix = f"{found or python} -m pip install '{spec}'"
    return {"python": found or python, "version": version, "fits": fits, "fix": fix}


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", default="http://127.0.0.1:5000"),
            timeout=dict(type="float", default=10),
            wait_timeout=dict(type="float", default=0),
            interval=dict(type="float", default=1),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            url_username=dict(type="str"),
            url_password=dict(type="str", no_log=True),
            headers=dict(type="dict"),
            host_header=dict(type="str"),
            expected_version=dict(type="str"),
            check_api=dict(type="bool", default=True),
            use_proxy=dict(type="bool", default=True),
            fail_on_unhealthy=dict(type="bool", default=True),
            client_python=dict(type="str", default=""),
            ssh_tunnel=dict(
                type="dict",
                options=dict(
                    host=dict(type="str", required=True),
                    config=dict(type="path"),
                    connect_timeout=dict(type="int", default=15),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # A password written into url is a secret too: Ansible masks no_log values everywhere in the result,
    # including the module arguments it echoes back (invocation).
    module.no_log_values.update(url_secrets(p["url"]))
    error = url_error(p["url"])
    if error:
        module.fail_json(msg=error)
    for name in ("timeout", "interval"):
        if p[name] <= 0:
            module.fail_json(msg=f"{name} must be above 0 seconds, got {p[name]}.")
    if p["wait_timeout"] < 0:
        module.fail_json(msg=f"wait_timeout must be 0 (probe once) or more seconds, got {p['wait_timeout']}.")

    try:
        probe = HealthProbe(
            p["url"],
            timeout=p["timeout"],
            validate_certs=p["validate_certs"],
            ca_path=p["ca_path"],
            url_username=p["url_username"],
            url_password=p["url_password"],
            headers=p["headers"],
            host_header=p["host_header"],
            expected_version=p["expected_version"],
            check_api=p["check_api"],
            use_proxy=p["use_proxy"],
            allowed_hosts_setting=ALLOWED_HOSTS_SETTING,
        )
    except ValueError as e:  # a proxy environment variable that is not an http:// proxy
        module.fail_json(msg=str(e))
    if p["ssh_tunnel"]:
        if not p["ssh_tunnel"]["host"] or p["ssh_tunnel"]["host"].startswith("-"):
            module.fail_json(
                msg=f"ssh_tunnel.host must be the Host alias of an ssh config block, got {p['ssh_tunnel']['host']!r}; "
                "a name that starts with '-' would be read as an option of ssh."
            )
        result = probe_through_tunnel(module, p["ssh_tunnel"], probe)
    else:
        result = wait_until_healthy(probe, p["wait_timeout"], p["interval"])
    result.update(url=probe.url, changed=False, client=None)
    if p["client_python"] and result["healthy"]:
        result["client"] = client_fit(module, p["client_python"], result["version"])
    if not result["healthy"] and p["fail_on_unhealthy"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

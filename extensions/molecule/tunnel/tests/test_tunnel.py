"""Real tunnels from the controller to the target, with the ssh config the client role wrote."""

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import (
    ALIAS,
    ALIAS_B,
    CLIENT,
    CONFIG,
    HELPER,
    KEY,
    LOG_RUN,
    READ_RUN,
    SERVER_USER,
    SHELL_ALIAS_B,
    SHELL_USER,
    STORE,
    Tunnel,
    assert_run_lands_on_the_server,
    mlflow_tunnel,
    port_is_free,
    ports,
    server_address,
    ssh,
    strip_blocks,
    wait_until,
)

testinfra_hosts = ["tunnel-server"]


def effective(alias):
    """What ssh itself makes of the config for this alias (`ssh -G`), option -> values."""
    result = ssh("-G", alias)
    assert result.returncode == 0, result.stderr
    options = {}
    for line in result.stdout.splitlines():
        name, value = line.split(" ", 1) if " " in line else (line, "")
        options.setdefault(name, []).append(value)
    return options


def test_users_other_lines_stay_byte_identical():
    text = CONFIG.read_bytes().decode()
    for alias in (ALIAS, ALIAS_B):
        assert text.count(f"# BEGIN mlops.mlflow.client Host {alias}\n") == 1
        assert text.count(f"# END mlops.mlflow.client Host {alias}\n") == 1
    assert strip_blocks(text, [ALIAS, ALIAS_B]) == (CLIENT / "config.orig").read_bytes().decode()


def test_ssh_dir_is_0700_and_config_0600_owned_by_the_member():
    # prepare made them 0755 and 0644; the role tightens both. The member is root here.
    assert CONFIG.parent.stat().st_mode & 0o7777 == 0o700
    assert CONFIG.stat().st_mode & 0o7777 == 0o600
    assert CONFIG.stat().st_uid == 0


def test_ssh_reads_the_promised_options_despite_a_catch_all_host():
    # The member's own `Host *` says ForwardAgent yes and ServerAliveInterval 120.
    options = effective(ALIAS)
    assert options["hostname"] == [server_address()]
    assert options["user"] == [SERVER_USER]
    assert options["port"] == ["22"]
    # Both ends by address: `localhost` may be ::1 first, where any account could listen.
    assert options["localforward"] == [f"[127.0.0.1]:{ports()[0]} [127.0.0.1]:500"]
    assert options["exitonforwardfailure"] == ["yes"]
    assert options["serveraliveinterval"] == ["30"]
    assert options["forwardagent"] == ["no"]
    assert options["requesttty"] == ["false"]
    assert options["identityfile"] == [str(KEY)]
    # The control socket: `ssh -O check|exit <alias>` finds the tunnel; no ControlPersist.
    assert options["controlmaster"] == ["auto"]
    assert options["controlpath"] == [str(control_dir() / ALIAS)]
    assert options["controlpersist"] == ["no"]


def control_dir():
    return Path(effective(ALIAS)["controlpath"][0]).parent


def test_control_directory_is_private_to_the_member():
    assert control_dir().stat().st_mode & 0o7777 == 0o700
    assert HELPER.stat().st_mode & 0o777 == 0o755


def test_each_alias_has_its_own_forward():
    assert effective(ALIAS_B)["localforward"] == [f"[127.0.0.1]:{ports()[1]} [127.0.0.1]:500"]
    # ... and its own control socket: one `ssh -O exit` never closes the other's tunnel.
    assert effective(ALIAS_B)["controlpath"] == [str(control_dir() / ALIAS_B)]


class Transcript:
    """Runs commands and records them as a terminal would show them."""

    def __init__(self):
        self.lines = []

    def run(self, shown, argv, env=None):
        result = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
        )
        self.lines.append(f"$ {shown}")
        self.lines.extend((result.stdout + result.stderr).splitlines())
        self.lines.append(f"[exit {result.returncode}]")
        return result

    def tunnel(self, *args):
        return self.run(f"mlflow-tunnel {' '.join(args)}", [str(HELPER), *args], env=self.env)

    @property
    def env(self):
        return dict(os.environ, MLFLOW_TUNNEL_SSH_CONFIG=str(CONFIG))


def test_tunnel_life_open_check_log_close_reopen(host, tmp_path):
    """The member's whole cycle with mlflow-tunnel and ssh's own -O check, written to
    $MOLECULE_EPHEMERAL_DIRECTORY/tunnel-transcript.txt."""
    port = ports()[0]
    t = Transcript()
    t.lines.append(f"$ export MLFLOW_TUNNEL_SSH_CONFIG={CONFIG}   # the scenario's stand-in for ~/.ssh/config")
    try:
        assert t.tunnel("status", ALIAS).returncode == 3

        opened = t.tunnel("open", ALIAS)
        assert opened.returncode == 0, opened.stderr
        assert opened.stdout.startswith(f"opened: ssh tunnel {ALIAS} (pid ")
        assert f"MLflow answers on http://127.0.0.1:{port} (/health: OK)" in opened.stdout

        status = t.tunnel("status", ALIAS)
        assert status.returncode == 0
        assert status.stdout.startswith(f"running: ssh tunnel {ALIAS} (pid ")
        check = t.run(
            f'ssh -F "$MLFLOW_TUNNEL_SSH_CONFIG" -O check {ALIAS}', ["ssh", "-F", str(CONFIG), "-O", "check", ALIAS]
        )
        assert check.returncode == 0 and "Master running" in check.stderr

        artifact = tmp_path / "notes.txt"
        artifact.write_text("logged through mlflow-tunnel\n")
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="2")
        logged = t.run(
            f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port} python log_run.py {artifact.name}",
            [sys.executable, "-c", LOG_RUN, str(artifact)],
            env=env,
        )
        assert logged.returncode == 0, logged.stderr
        run_id = json.loads(logged.stdout.splitlines()[-1])["run_id"]
        stored = json.loads(host.check_output(f"python3 -c '{READ_RUN.format(store=STORE)}' {run_id}"))
        assert stored["params"] == [["learning_rate", "0.01"], ["optimizer", "adam"]]

        again = t.tunnel("open", ALIAS)
        assert (again.returncode, again.stdout.split(" (pid")[0]) == (0, f"already open: ssh tunnel {ALIAS}")

        closed = t.tunnel("close", ALIAS)
        assert closed.returncode == 0, closed.stderr
        assert closed.stdout.endswith(f"127.0.0.1:{port} is free\n")
        assert port_is_free(port)
        status = t.tunnel("status", ALIAS)
        assert status.returncode == 3 and status.stdout.startswith("not running")
        check = t.run(
            f'ssh -F "$MLFLOW_TUNNEL_SSH_CONFIG" -O check {ALIAS}', ["ssh", "-F", str(CONFIG), "-O", "check", ALIAS]
        )
        assert check.returncode != 0

        reopened = t.tunnel("open", ALIAS)
        assert reopened.returncode == 0, reopened.stderr
        assert "(/health: OK)" in reopened.stdout
        assert t.tunnel("close", ALIAS).returncode == 0
    finally:
        mlflow_tunnel("close", ALIAS)
        # Also under .cache/logs, which outlives `molecule test`'s destroy.
        logs = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for directory in (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]), logs):
            (directory / "tunnel-transcript.txt").write_text("\n".join(t.lines) + "\n")
    assert port_is_free(port)


def test_a_shell_beside_the_tunnel_uses_the_shell_alias():
    port = ports()[1]
    opened = mlflow_tunnel("open", ALIAS_B)
    assert opened.returncode == 0, opened.stderr
    try:
        shell = ssh(SHELL_ALIAS_B, "id -un")
        assert (shell.returncode, shell.stdout.strip()) == (0, SHELL_USER)
        assert "Could not request local forwarding" not in shell.stderr
        # The tunnel is untouched by the session's end.
        assert mlflow_tunnel("status", ALIAS_B).returncode == 0
        assert not port_is_free(port)
    finally:
        assert mlflow_tunnel("close", ALIAS_B).returncode == 0
    assert port_is_free(port)


def test_an_interactive_session_that_holds_the_port_is_explained_not_cut_off():
    """A session started on the tunnel alias before any tunnel becomes the control master
    and binds the port; the helper says so, and `close` does not cut the session off."""
    port = ports()[1]
    session = subprocess.Popen(
        ["ssh", "-F", str(CONFIG), "-o", "BatchMode=yes", ALIAS_B, "sleep 60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: not port_is_free(port), timeout=20)
        status = mlflow_tunnel("status", ALIAS_B)
        assert status.returncode == 0, status.stdout
        assert f"An interactive ssh session (pid {session.pid}: ssh -F {CONFIG}" in status.stdout
        assert "mlflow_client_shell_alias" in status.stdout
        again = mlflow_tunnel("open", ALIAS_B)
        assert again.returncode == 0
        assert again.stdout.startswith(f"already open: 127.0.0.1:{port} is forwarded by an interactive ssh session")
        closed = mlflow_tunnel("close", ALIAS_B)
        assert closed.returncode == 1
        assert f"not closed: that would cut the session off; end it (exit) to free 127.0.0.1:{port}" in closed.stderr
        assert session.poll() is None
    finally:
        session.terminate()
        session.wait(timeout=10)
    assert wait_until(lambda: port_is_free(port))
    assert mlflow_tunnel("status", ALIAS_B).returncode == 3


def test_runs_logged_through_the_tunnel_land_on_the_server(host, tunnel, tmp_path):
    port = ports()[0]
    tunnel(ALIAS)
    assert_run_lands_on_the_server(host, port, tmp_path)


def test_taken_local_port_makes_ssh_fail_loudly():
    port = ports()[0]
    assert port_is_free(port)
    squatter = socket.socket()
    # A tunnel closed a moment ago may leave the port in TIME_WAIT.
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    t = Tunnel(ALIAS)
    try:
        result = t.open()
        assert result.returncode != 0
        assert "Could not request local forwarding" in result.stderr
    finally:
        t.close()
        squatter.close()


def test_two_servers_tunnel_at_once(tunnel):
    tunnel(ALIAS)
    tunnel(ALIAS_B)
    for port in ports():
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.read() == b"OK"


def test_member_key_is_authorized_for_the_server_account(host):
    keys = host.file(f"/home/{SERVER_USER}/.ssh/authorized_keys")
    assert keys.user == SERVER_USER
    assert KEY.with_suffix(".pub").read_text().split()[1] in keys.content_string


def test_mlflow_stays_on_loopback(host):
    listeners = [line.split()[3] for line in host.check_output("ss -ltnH").splitlines()]
    assert [a for a in listeners if a.endswith(":500")] == ["127.0.0.1:500"]

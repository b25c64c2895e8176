"""Real tunnels from the controller to the target, with the ssh config the client role wrote."""

import socket
import urllib.request

from conftest import (
    ALIAS,
    ALIAS_B,
    CLIENT,
    CONFIG,
    KEY,
    SERVER_USER,
    Tunnel,
    assert_run_lands_on_the_server,
    port_is_free,
    ports,
    server_address,
    ssh,
    strip_blocks,
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
    # The server's ansible_port (molecule.yml), which onboarding hands to members.
    assert options["port"] == ["2222"]
    assert options["localforward"] == [f"[127.0.0.1]:{ports()[0]} [localhost]:5000"]
    assert options["exitonforwardfailure"] == ["yes"]
    assert options["serveraliveinterval"] == ["30"]
    assert options["forwardagent"] == ["no"]
    assert options["requesttty"] == ["false"]
    assert options["identityfile"] == [str(KEY)]


def test_each_alias_has_its_own_forward():
    assert effective(ALIAS_B)["localforward"] == [f"[127.0.0.1]:{ports()[1]} [localhost]:5000"]


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
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Host": f"localhost:{port}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.read() == b"OK"


def test_member_key_is_authorized_for_the_server_account(host):
    keys = host.file(f"/home/{SERVER_USER}/.ssh/authorized_keys")
    assert keys.user == SERVER_USER
    assert KEY.with_suffix(".pub").read_text().split()[1] in keys.content_string


def test_mlflow_stays_on_loopback(host):
    listeners = [line.split()[3] for line in host.check_output("ss -ltnH").splitlines()]
    assert [a for a in listeners if a.endswith(":5000")] == ["127.0.0.1:5000"]

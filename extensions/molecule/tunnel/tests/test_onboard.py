"""playbooks/onboard.yml: tunnel-only members by default, accounts it must not touch refused,
the server's SSH port used, and each member's failure reported without hiding the others."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import ALIAS, CONFIG, KEY, SERVER_USER, port_is_free, ports, raw_get, server_address, short_dir

testinfra_hosts = ["tunnel-server"]
# Outside the scenario's ephemeral directory, which destroy removes.
TRANSCRIPT = Path(__file__).resolve().parents[4] / ".cache" / "logs" / "member_key.txt"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member(tmp_path, name, port=None, identity_file=KEY, **extra):
    # A short home: ssh's control socket path beside the config must stay under 108 bytes.
    home = short_dir(f"{name}-")
    return {
        "name": name,
        "pc": "localhost",
        "local_user": "root",
        "server_user": name,
        "public_key": KEY.with_suffix(".pub").read_text().strip(),
        "host_alias": f"mlflow-{name}",
        "local_port": port or free_port(),
        "identity_file": str(identity_file),
        "ssh_config_path": str(home / ".ssh" / "config"),
        "ssh_options": {"UserKnownHostsFile": str(home / "known_hosts")},
        **extra,
    }


def onboard(tmp_path, team, **extra_vars):
    extra = tmp_path / "team.json"
    extra.write_text(json.dumps({"mlflow_team": team, **extra_vars}))
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
            "mlops.mlflow.onboard",
            "-e",
            f"@{extra}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, result.stdout + result.stderr


def ssh(*args, timeout=30):
    """The member's own alias, as they would use it, on a connection of its own (no control master)."""
    command = [
        "ssh",
        "-F",
        str(CONFIG),
        "-o",
        "BatchMode=yes",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    with TRANSCRIPT.open("a") as out:
        out.write(f"$ ssh {' '.join(args)}\n{result.stdout}{result.stderr}[exit {result.returncode}]\n\n")
    return result


def forward(target, timeout=20):
    """ssh -N -L <port>:<target> through the member's alias; returns (what the port gave, ssh's stderr)."""
    port = free_port()
    command = ["ssh", "-F", str(CONFIG), "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    command += ["-N", "-L", f"127.0.0.1:{port}:{target}", ALIAS]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while port_is_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        received = raw_get(port, host_header="localhost:" + target.rsplit(":", 1)[1], timeout=10)
    finally:
        process.terminate()
        try:
            stderr = process.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            # Once seen on a loaded host: ssh still closing its channels 10 s after SIGTERM.
            # How ssh ends is not what this test is about; what the port gave and stderr are.
            process.kill()
            stderr = process.communicate()[1]
    with TRANSCRIPT.open("a") as out:
        out.write(f"$ ssh -N -L 127.0.0.1:{port}:{target} {ALIAS}   # then a request to 127.0.0.1:{port}\n")
        out.write(f"{received[:60]!r}\n{stderr}\n")
    return received, stderr


def test_a_tunnel_only_key_forwards_to_mlflow_and_nothing_else():
    TRANSCRIPT.parent.mkdir(parents=True, exist_ok=True)
    TRANSCRIPT.write_text("What the key of a tunnel-only member can and cannot do (real ssh, its own alias):\n\n")
    # Can: forward to MLflow on the server's loopback, by its address.
    received, _stderr = forward("127.0.0.1:500")
    assert received.startswith(b"HTTP/1.") and received.endswith(b"OK"), received
    # Cannot: forward to the name localhost, which sshd may resolve to ::1 first, where any
    # account on the server could listen; nor to the port MLflow had before 0.5.0.
    for target in ("localhost:500", "127.0.0.1:5000", "localhost:5000"):
        received, stderr = forward(target)
        assert received == b"" and "administratively prohibited" in stderr, (target, received)
    # Cannot: forward anywhere else, the server's own sshd included.
    received, stderr = forward("localhost:22")
    assert b"SSH-2.0" not in received
    assert "administratively prohibited" in stderr
    # Cannot: listen on the server (it could stand in for MLflow on its loopback).
    result = ssh("-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:localhost:22", ALIAS)
    assert result.returncode != 0 and "remote port forwarding failed" in result.stderr
    # Cannot: run a command or get a shell.
    result = ssh(ALIAS, "id")
    assert result.returncode != 0 and "This account is currently not available" in result.stdout + result.stderr
    result = ssh("-tt", ALIAS)
    assert result.returncode != 0 and "PTY allocation request failed" in result.stderr


def test_the_member_account_is_marked_and_has_no_login_shell(host):
    alice = host.user(SERVER_USER)
    assert alice.shell == "/usr/sbin/nologin"
    assert alice.gecos == "mlops.mlflow member alice"
    assert "mlflow-members" in alice.groups
    keys = host.file(f"/home/{SERVER_USER}/.ssh/authorized_keys").content_string.splitlines()
    assert len(keys) == 1
    assert keys[0].startswith('restrict,port-forwarding,permitopen="127.0.0.1:500" ssh-ed25519 ')


def test_sshd_limits_the_members_group_to_local_forwards_to_mlflow(host):
    effective = host.check_output(f"sshd -T -C user={SERVER_USER},host=pc,addr=192.0.2.9").lower().splitlines()
    assert "allowtcpforwarding local" in effective
    assert "permitlisten none" in effective
    assert "permitopen 127.0.0.1:500" in effective
    assert "permittty no" in effective
    # Everyone else keeps the server's defaults.
    assert (
        "allowtcpforwarding yes"
        in host.check_output("sshd -T -C user=carol,host=pc,addr=192.0.2.9").lower().splitlines()
    )


def test_onboarding_fails_when_an_earlier_sshd_setting_undoes_the_members_limits(host, tmp_path):
    """sshd keeps the first value it reads: an admin's drop-in that sorts before onboarding's
    would leave a tunnel-only member free to `ssh -R`. Onboarding checks what sshd applies."""
    earlier = "/etc/ssh/sshd_config.d/00-lab.conf"
    host.check_output(f"printf 'Match User ivy\\n    AllowTcpForwarding yes\\n    PermitListen any\\n' > {earlier}")
    try:
        result, out = onboard(tmp_path, [member(tmp_path, "ivy")])
        # The hole is real: sshd gives ivy remote forwards.
        effective = host.check_output("sshd -T -C user=ivy,host=pc,addr=192.0.2.9").lower().splitlines()
        assert "allowtcpforwarding yes" in effective and "permitlisten any" in effective
    finally:
        host.check_output(f"rm -f {earlier}")
    assert result.returncode != 0
    assert "does not give the tunnel-only members the limits of /etc/ssh/sshd_config.d/mlflow-members.conf" in out
    assert "lacks allowtcpforwarding local, permitlisten none" in out
    # The control: without the earlier drop-in, the same member is onboarded.
    result, out = onboard(tmp_path, [member(tmp_path, "ivy")])
    assert result.returncode == 0, out[-3000:]
    assert "allowtcpforwarding local" in host.check_output("sshd -T -C user=ivy,host=pc,addr=192.0.2.9").lower()


def test_members_log_in_on_the_servers_ssh_port(tmp_path):
    """With the server in the inventory on ansible_port 2222 (its sshd listens there too), a member's
    Host block says Port 2222 and onboarding's own check through the tunnel passes. An inventory of
    its own: testinfra would read ansible_port as part of the container's name."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "mlflow_servers": {
                    "hosts": {"tunnel-server": {"ansible_connection": "community.docker.docker", "ansible_port": 2222}}
                },
                "mlflow_clients": {
                    "hosts": {
                        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
                    }
                },
            }
        )
    )
    team = [member(tmp_path, "ivo")]
    extra = tmp_path / "team.json"
    extra.write_text(
        json.dumps(
            {
                "mlflow_team": team,
                "mlflow_team_manage_accounts": True,
                "mlflow_team_server_address": server_address(),
            }
        )
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "mlops.mlflow.onboard", "-e", f"@{extra}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "ivo: OK." in result.stdout
    assert "  Port 2222\n" in Path(team[0]["ssh_config_path"]).read_text()


def test_a_shell_member_gets_a_login_and_an_unrestricted_key(host, tmp_path):
    result, out = onboard(tmp_path, [member(tmp_path, "hana", access="shell")])
    assert result.returncode == 0, out[-3000:]
    hana = host.user("hana")
    assert hana.shell == "/bin/bash"
    assert "mlflow-members" not in hana.groups
    [key] = host.file("/home/hana/.ssh/authorized_keys").content_string.splitlines()
    assert key.startswith("ssh-ed25519 ")


def test_onboard_refuses_accounts_it_must_not_touch_before_any_change(host, tmp_path):
    """root, system accounts, an existing account onboarding did not create, a key of two lines."""
    before = {user: host.check_output(f"getent passwd {user}") for user in ("root", "daemon", "legacy")}
    root_keys = host.run("cat /root/.ssh/authorized_keys").stdout
    two_keys = (
        KEY.with_suffix(".pub").read_text().strip()
        + '\ncommand="/bin/sh" '
        + KEY.with_suffix(".pub").read_text().strip()
    )
    team = [
        member(tmp_path, "rooted", server_user="root"),
        member(tmp_path, "sys", server_user="daemon"),
        member(tmp_path, "old", server_user="legacy"),
        member(tmp_path, "twokeys", public_key=two_keys),
        member(tmp_path, "weird", access="admin"),
    ]
    result, out = onboard(tmp_path, team)
    assert result.returncode != 0
    assert "rooted: REFUSED before any change: server_user must be a lower-case account name other than root" in out
    assert "sys: FAILED on the server: server_user daemon is a system account" in out
    assert "old: FAILED on the server: server_user legacy is an existing account that onboarding did not create" in out
    assert "twokeys: REFUSED before any change: public_key must be one OpenSSH public key on one line" in out
    assert "weird: REFUSED before any change: access must be tunnel or shell" in out
    assert "5 of 5 members were not onboarded" in out
    assert {user: host.check_output(f"getent passwd {user}") for user in ("root", "daemon", "legacy")} == before
    assert host.run("cat /root/.ssh/authorized_keys").stdout == root_keys
    assert not host.user("twokeys").exists
    assert not host.file("/home/legacy/.ssh/authorized_keys").exists


def test_an_existing_account_may_be_used_when_allowed_and_keeps_its_shell(host, tmp_path):
    before = host.check_output("getent passwd legacy")
    result, out = onboard(
        tmp_path, [member(tmp_path, "old", server_user="legacy")], mlflow_team_allow_existing_accounts=True
    )
    assert result.returncode == 0, out[-3000:]
    assert host.check_output("getent passwd legacy") == before
    assert host.file("/home/legacy/.ssh/authorized_keys").content_string.startswith("restrict,port-forwarding,")


def test_onboard_reports_each_failing_member_and_keeps_the_others(host, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    bob_port = ports()[1]
    assert port_is_free(bob_port)
    team = [
        member(tmp_path, "dora"),
        # bob's local port is taken by another program.
        member(tmp_path, "bob", bob_port),
        # cora offers a key the server never saw.
        member(tmp_path, "cora", identity_file=stranger),
        # gus's alias has a space in it.
        member(tmp_path, "gus", host_alias="mlflow gus"),
    ]
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", bob_port))
    squatter.listen()
    try:
        result, out = onboard(tmp_path, team)
    finally:
        squatter.close()
    assert result.returncode != 0
    assert "dora: OK. Next: on localhost as root run `ssh -F" in out
    assert "bob: FAILED at" in out and "Could not request local forwarding" in out
    assert "cora: FAILED at" in out and "Permission denied" in out
    assert "gus: FAILED at" in out and "mlflow_client_host_alias must be a non-empty name" in out
    assert "3 of 4 members were not onboarded" in out
    # The members' accounts were made on the server even where the tunnel failed.
    for name in ("dora", "bob", "gus"):
        assert host.user(name).exists

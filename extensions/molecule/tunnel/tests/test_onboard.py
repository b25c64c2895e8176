"""playbooks/onboard.yml reports each member's failure without hiding the others."""

import json
import os
import socket
import subprocess
from pathlib import Path

from conftest import KEY, port_is_free, ports

testinfra_hosts = ["tunnel-server"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member(tmp_path, name, port, identity_file):
    home = tmp_path / name
    return {
        "name": name,
        "pc": "localhost",
        "local_user": "root",
        "server_user": name,
        "public_key": KEY.with_suffix(".pub").read_text().strip(),
        "host_alias": f"mlflow-{name}",
        "local_port": port,
        "identity_file": str(identity_file),
        "ssh_config_path": str(home / ".ssh" / "config"),
        "ssh_options": {"UserKnownHostsFile": str(home / "known_hosts")},
    }


def test_onboard_reports_each_failing_member_and_keeps_the_others(host, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    bob_port = ports()[1]
    assert port_is_free(bob_port)
    team = [
        member(tmp_path, "dora", free_port(), KEY),
        # bob's local port is taken by another program.
        member(tmp_path, "bob", bob_port, KEY),
        # carol offers a key the server never saw.
        member(tmp_path, "carol", free_port(), stranger),
        # gus's alias has a space in it.
        {**member(tmp_path, "gus", free_port(), KEY), "host_alias": "mlflow gus"},
    ]
    extra = tmp_path / "team.json"
    extra.write_text(json.dumps({"mlflow_team": team}))
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", bob_port))
    squatter.listen()
    try:
        result = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                "mlops.mlflow.onboard",
                "-e",
                f"@{extra}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        squatter.close()
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "dora: OK. Next: on localhost as root run `ssh -F" in out
    assert "bob: FAILED at" in out and "Could not request local forwarding" in out
    assert "carol: FAILED at" in out and "Permission denied" in out
    assert "gus: FAILED at" in out and "mlflow_client_host_alias must be a non-empty name" in out
    assert "3 of 4 members were not onboarded" in out
    # The members' accounts were made on the server even where the tunnel failed.
    for name in ("dora", "bob", "carol", "gus"):
        assert host.user(name).exists

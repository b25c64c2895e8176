"""On a PC shared by several accounts, root never acts through a link a member planted.

Onboarding reaches a PC as root (or an admin) and writes the member's files in their home.
dave, a member with a shell on that PC, plants a link where the client role makes a
directory, pointing at a directory only root may touch. Before 0.5.0 root followed it
and handed the directory to dave (0700): a link to /etc gives root. Now every file in the
member's home is written as the member, so the kernel refuses: onboarding fails for dave
alone, and the directory keeps its owner, mode and contents.

The PC is the target itself, as on a shared workstation (its systemd and logind serve the
always-on tunnel's user unit, so ~/.config is written too).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import KEY

testinfra_hosts = ["tunnel-server"]

MEMBER = "dave"
HOME = f"/home/{MEMBER}"
# Where the client role makes a directory, by the link dave planted there.
PLANTS = {
    "control socket directory": ".ssh/mlflow-cm",
    "user unit directory": ".config",
}
# The old role's own task for the control directory, run by root as it did.
OLD_TASK = "path={link} state=directory owner=" + MEMBER + " mode=0700"


def inventory(tmp_path):
    """The server, and the same target as a PC with the always-on tunnel asked for."""
    docker = {"ansible_connection": "community.docker.docker"}
    path = tmp_path / "inventory.json"
    path.write_text(
        json.dumps(
            {
                "mlflow_servers": {"hosts": {"tunnel-server": docker}},
                "mlflow_clients": {"hosts": {"shared-pc": {**docker, "ansible_host": "tunnel-server"}}},
                "shared_pcs": {"hosts": {"shared-pc": {}}, "vars": {"mlflow_client_tunnel_service": True}},
            }
        )
    )
    return path


def onboard_dave(tmp_path):
    extra = tmp_path / "team.json"
    extra.write_text(
        json.dumps(
            {
                "mlflow_team": [
                    {
                        "name": MEMBER,
                        "pc": "shared-pc",
                        "local_user": MEMBER,
                        "server_user": "davesrv",
                        "public_key": KEY.with_suffix(".pub").read_text().strip(),
                    }
                ],
                "mlflow_team_manage_accounts": True,
                "mlflow_team_server_address": "127.0.0.1",
            }
        )
    )
    result = subprocess.run(
        ["ansible-playbook", "-i", str(inventory(tmp_path)), "mlops.mlflow.onboard", "-e", f"@{extra}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return result, result.stdout + result.stderr


def tree(host, path):
    """Owner, group, mode and name of everything under path, as root sees it."""
    return host.check_output(f"find {path} -printf '%u %g %m %p\\n' | sort")


@pytest.fixture
def planted(host, request):
    """dave's home with the link at PLANTS[param], to a root-only directory holding a file."""
    link = f"{HOME}/{PLANTS[request.param]}"
    target = f"/root/planted-{request.param.split()[0]}"
    host.check_output(f"id {MEMBER} || useradd --create-home --shell /bin/bash {MEMBER}")
    host.check_output(f"install -d -o root -g root -m 0700 {target} && echo root-only > {target}/keep")
    host.check_output(f"runuser -u {MEMBER} -- sh -c 'mkdir -p $(dirname {link}) && ln -sfn {target} {link}'")
    yield link, target
    host.run(f"rm -f {link}; rm -rf {target}")


@pytest.mark.parametrize("planted", list(PLANTS), indirect=True)
def test_positive_control_root_following_the_link_hands_the_directory_to_the_member(host, planted, tmp_path):
    link, target = planted
    before = tree(host, target)
    run = subprocess.run(
        ["ansible", "shared-pc", "-i", str(inventory(tmp_path)), "-m", "ansible.builtin.file",
         "-a", OLD_TASK.format(link=link)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    try:
        assert host.file(target).user == MEMBER, "root followed the link and chowned the target"
        assert tree(host, target) != before
    finally:
        host.check_output(f"chown root:root {target} && chmod 0700 {target}")


@pytest.mark.parametrize("planted", list(PLANTS), indirect=True)
def test_onboarding_fails_closed_for_a_member_who_planted_a_link(host, planted, tmp_path):
    link, target = planted
    before = tree(host, target)
    result, out = onboard_dave(tmp_path)
    assert result.returncode != 0
    assert f"{MEMBER}: FAILED at" in out, out[-3000:]
    assert "1 of 1 members were not onboarded" in out
    assert tree(host, target) == before
    assert host.file(target).user == "root" and host.file(target).mode == 0o700
    # Nothing root-owned was made in dave's home either: what exists there is dave's.
    owners = host.check_output(f"find {HOME} -xdev -printf '%u\\n' | sort -u").split()
    assert owners == [MEMBER]
    assert os.path.basename(link) in host.check_output(f"ls -a {Path(link).parent}")

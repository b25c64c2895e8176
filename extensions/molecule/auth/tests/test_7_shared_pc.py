"""On the members' shared PC, root never writes through a link a member planted in ~/.mlflow.

eve, another account on the PC, links ~/.mlflow to a directory only root may touch before
she is onboarded. Before 0.5.0 root made ~/.mlflow hers (0700) through the link, then wrote
her MLflow password into it. Now onboarding writes her files as eve: it fails for her alone,
and the directory keeps its owner, mode and contents. (test_shared_pc.py in the tunnel
scenario plants ~/.ssh/mlflow-cm and ~/.config the same way.)"""

import os
import subprocess
from pathlib import Path

from conftest import PC, PROJECT, SECOND_ADMIN_PASSWORD, run_playbook

testinfra_hosts = ["mlflow-auth"]

TARGET = "/root/planted-mlflow"


def on_pc_as_root(command):
    result = subprocess.run(["docker", "exec", PC, "sh", "-c", command], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def plant():
    on_pc_as_root(
        "id eve || useradd --create-home --shell /bin/bash eve;"
        f" rm -rf {TARGET}; install -d -o root -g root -m 0700 {TARGET} && echo root-only > {TARGET}/keep;"
        f" su eve -c 'ln -sfn {TARGET} /home/eve/.mlflow'"
    )


def tree():
    return on_pc_as_root(f"find {TARGET} -printf '%u %g %m %p\\n' | sort")


def test_positive_control_root_following_the_link_hands_the_directory_to_eve():
    plant()
    before = tree()
    run = subprocess.run(
        ["ansible", PC, "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-m", "ansible.builtin.file",
         "-a", "path=/home/eve/.mlflow state=directory owner=eve mode=0700"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, cwd=PROJECT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    assert tree() != before and on_pc_as_root(f"stat -c %U {TARGET}").strip() == "eve"


def test_onboarding_fails_closed_for_eve_and_the_directory_stays_roots(host):
    plant()
    before = tree()
    eve = {
        "name": "eve",
        "pc": PC,
        "local_user": "eve",
        "public_key": (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys" / "ann.pub").read_text().strip(),
        "host_alias": "mlflowauth",
        "local_port": 5003,
    }
    result = run_playbook(
        host,
        "onboard.yml",
        {"mlflow_team": [eve], "mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD},
        limit=False,
    )
    assert result.rc != 0
    assert "eve: FAILED at" in result.stdout, result.stdout[-3000:]
    assert tree() == before
    assert on_pc_as_root(f"stat -c '%U %a' {TARGET}").strip() == "root 700"
    # Her password went nowhere root writes for her.
    assert on_pc_as_root(f"ls {TARGET}").split() == ["keep"]

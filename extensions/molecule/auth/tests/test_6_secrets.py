"""No secret in Ansible's output (-vvv included), the Compose file, a command line, `docker
inspect`, or any file a non-root account can read, on the server or the members' PC."""

import hashlib
import json
import os
import subprocess

from conftest import FIRST_ADMIN_PASSWORD, LOGS, PC, PROJECT, SECOND_ADMIN_PASSWORD, STORE, UPGRADED, on_pc

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]

# As molecule.yml gives them.
ANN_VAULT_PASSWORD = "ann-Vault-secret-5"
BECOME_PASSWORD = "Become-secret-9x"

REPORT = LOGS / "auth-leaks.txt"


def secrets(host):
    found = {
        "first admin password": FIRST_ADMIN_PASSWORD,
        "second admin password": SECOND_ADMIN_PASSWORD,
        "Flask session key": host.check_output(f"cat {STORE}/secrets/flask_secret_key").strip(),
        "AI Gateway passphrase": host.check_output(f"cat {STORE}/secrets/kek_passphrase").strip(),
        "webhook secrets' key": host.check_output(f"cat {STORE}/secrets/webhook_key").strip(),
    }
    ann = subprocess.run(
        ["docker", "exec", PC, "sed", "-n", "s/^mlflow_tracking_password *= *//p", "/home/ann/.mlflow/credentials"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found["ann's MLflow password"] = ann
    assert ann == ANN_VAULT_PASSWORD, "onboarding gave ann another password than her entry's"
    found["the PC's become password"] = BECOME_PASSWORD
    # A plain digest of a password can be checked against guesses offline: the host read once
    # showed the SHA-1 of the admin password's record with -v.
    found["SHA-1 of the admin password"] = hashlib.sha1(SECOND_ADMIN_PASSWORD.encode()).hexdigest()
    assert all(len(value) >= 12 for value in found.values()), "a secret was not found where it is kept"
    return found


def verbose_runs():
    """site.yml and onboard.yml with -vvv, as an admin would run them when something looks wrong:
    module arguments, results (add_host's host variables among them) and connection details."""
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8", "ANSIBLE_NOCOLOR": "1"}
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    # The server runs 3.17.2 since test_4; the inventory still says 2.22.1.
    extra = json.dumps(UPGRADED)
    out = ""
    for playbook in ("site.yml", "onboard.yml"):
        run = subprocess.run(
            ["ansible-playbook", "-vvv", f"playbooks/{playbook}", "-i", inventory, "-e", extra],
            cwd=PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-3000:]
        out += run.stdout + run.stderr
    # The search would find them: -vvv shows module arguments and each member's host variables.
    assert '"module_args": {' in out and "mlflow-member-ann" in out
    return out


def test_no_secret_leaks_anywhere_a_user_or_a_log_could_see_it(host):
    found = secrets(host)
    places = {
        "ansible-playbook -vvv site.yml and onboard.yml": verbose_runs(),
        "the Compose file": host.file(f"{STORE}/docker-compose.yml").content_string,
        "ps on the server (every process, the containers' too)": host.check_output("ps -eo args"),
        "docker inspect of the MLflow container": host.check_output("docker inspect mlflow-server"),
    }
    patterns = " ".join(f"-e {json.dumps(value)}" for value in found.values())
    # As nobody: every file on the server a non-root account can read.
    readable = host.run(f"runuser -u nobody -- grep -rlF {patterns} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null")
    places["files on the server readable by nobody"] = readable.stdout
    on_the_pc = subprocess.run(
        [
            "docker",
            "exec",
            "-u",
            "nobody",
            PC,
            "sh",
            "-c",
            f"grep -rlF {patterns} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    places["files on the members' PC readable by nobody"] = on_the_pc.stdout
    places["ben reading ann's files"] = on_pc("ben", "cat /home/ann/.mlflow/credentials 2>&1; true").stdout
    leaks = [f"{what} in {where}" for where, text in places.items() for what, value in found.items() if value in text]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        "Searched for: "
        + ", ".join(found)
        + "\nIn: "
        + "; ".join(places)
        + "\nFound: "
        + ("; ".join(leaks) or "none")
        + "\n"
    )
    assert leaks == []


def test_the_mlflow_container_cannot_read_the_admin_record_or_the_compose_file(host):
    """MLflow sees, read-only, only the secret files it reads; the role's record of the admin's
    password and the Compose file stay out of a path-traversal bug's reach. MLflow's own settings
    (basic_auth.ini) still carry the configured admin password: MLflow creates the admin from them."""
    listed = host.check_output("docker exec mlflow-server ls -A /run/mlflow /mlflow").split()
    assert listed == [
        "/mlflow:",
        "db",
        "mlruns",
        "/run/mlflow:",
        "basic_auth.ini",
        "flask_secret_key",
        "kek_passphrase",
        "kek_version",
        "webhook_key",
    ]
    # Positive control: the record holds the current password on the host, where grep finds it.
    assert f"{STORE}/secrets/admin_password" in host.run(f"grep -rlF -- {SECOND_ADMIN_PASSWORD} {STORE}").stdout.split()
    inside = host.run(f"docker exec mlflow-server grep -rlF -- {SECOND_ADMIN_PASSWORD} /mlflow /run/mlflow")
    assert inside.rc == 0 and inside.stdout.split() == ["/run/mlflow/basic_auth.ini"]
    assert host.run("docker exec mlflow-server test -e /run/mlflow/admin_password").rc == 1

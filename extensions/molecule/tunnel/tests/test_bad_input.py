"""Hostile or careless input, refused before any change and naming the variable, across the
server role, the client role and onboarding, on the deployed scenario.

Each case is a bad value and a valid one for the same variable. The bad run must fail with
the message, change nothing (changed=0) and leave the files it would write byte-identical.
The valid run, in check mode (it changes nothing here either), must report that it would
change them, so "unchanged" means something. The runs go four at a time, the bad and the valid
ones in one queue; cases that share a valid value (the same variables for the same target) share
its run, which would give each of them the same outcome."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import CONFIG, KEY, run_client_role, short_dir

testinfra_hosts = ["tunnel-server"]
PROJECT = Path(__file__).resolve().parents[4]
WITNESS = "/tmp/mlflow-injected"
INJECT = f"\n    privileged: true\n    command: touch {WITNESS}"

# What each kind of run may write: the files fingerprinted on the server.
SERVER_FILES = [
    "/opt/mlflow/docker-compose.yml",
    "/opt/mlflow/.mlops-mlflow-store",
    "/etc/systemd/system/mlflow-gc.timer",
    "/etc/systemd/system/mlflow-gc.service",
    "/etc/systemd/system/mlflow-loopback-guard.service",
    "/srv/not-ours/keep",
]
ACCOUNT_FILES = [
    "/etc/passwd",
    "/etc/group",
    "/etc/ssh/sshd_config.d/mlflow-members.conf",
    "/home/legacy/.ssh/authorized_keys",
    "/root/.ssh/authorized_keys",
]


def member(name="zoe", **extra):
    return {
        "name": name,
        "pc": "localhost",
        "local_user": "root",
        "server_user": name,
        "public_key": KEY.with_suffix(".pub").read_text().strip(),
        "host_alias": f"mlflow-{name}",
        "local_port": 15432,
        "identity_file": str(KEY),
        **extra,
    }


# (case, target, bad extra vars, message fragment, valid extra vars)
CASES = [
    # --- the server role (playbooks/site.yml) ---
    (
        "store dir with a newline",
        "server",
        {"mlflow_server_store_dir": "/opt/mlflow" + INJECT},
        "mlflow_server_store_dir must be an absolute path",
        {"mlflow_server_store_dir": "/srv/mlflow-b"},
    ),
    (
        "store dir /etc",
        "server",
        {"mlflow_server_store_dir": "/etc"},
        "not a system directory such as /etc",
        {"mlflow_server_store_dir": "/srv/mlflow-b"},
    ),
    (
        "store dir /home",
        "server",
        {"mlflow_server_store_dir": "/home"},
        "not a system directory such as /etc",
        {"mlflow_server_store_dir": "/srv/mlflow-b"},
    ),
    (
        "store dir in a member's home",
        "server",
        {"mlflow_server_store_dir": "/home/alice/mlflow"},
        "nor below /home, /root, /tmp or /var/tmp",
        {"mlflow_server_store_dir": "/srv/mlflow-b"},
    ),
    (
        "store dir below /tmp",
        "server",
        {"mlflow_server_store_dir": "/tmp/mlflow"},
        "nor below /home, /root, /tmp or /var/tmp",
        {"mlflow_server_store_dir": "/srv/mlflow-b"},
    ),
    (
        "store dir climbing out with ..",
        "server",
        {"mlflow_server_store_dir": "/opt/mlflow/../../etc"},
        "without '..'",
        {"mlflow_server_store_dir": "/opt/mlflow-b"},
    ),
    (
        "bind address with a newline",
        "server",
        {"mlflow_server_bind_address": "127.0.0.1\n"},
        "mlflow_server_bind_address must be an IP address",
        {"mlflow_server_bind_address": "127.0.0.2"},
    ),
    (
        "port with a newline",
        "server",
        {"mlflow_server_port": "5000\n"},
        "mlflow_server_port must be a plain number",
        {"mlflow_server_port": 501},
    ),
    (
        "port 5_000",
        "server",
        {"mlflow_server_port": "5_000"},
        "mlflow_server_port must be a plain number",
        {"mlflow_server_port": 501},
    ),
    (
        "image with a newline",
        "server",
        {"mlflow_server_image": "mlops/mlflow:3.17.2" + INJECT},
        "mlflow_server_image must be a non-empty image reference",
        {"mlflow_server_image": "registry.invalid/mlflow:3.17.2"},
    ),
    (
        # Docker's key is fetched only with mlflow_server_docker_source: docker; the valid run
        # moves the port as well, so that it has something to change.
        "docker key checksum that is not one",
        "server",
        {"mlflow_server_docker_key_checksum": "1500c1f56fa9e26b9b8f42452a553675796ade0807" + INJECT},
        "mlflow_server_docker_key_checksum must be the checksum of Docker's apt signing key",
        {"mlflow_server_docker_key_checksum": "sha256:" + "0f" * 32, "mlflow_server_port": 501},
    ),
    (
        "allowed host with a newline",
        "server",
        {"mlflow_server_allowed_hosts": ["localhost:*" + INJECT]},
        "mlflow_server_allowed_hosts must be host:port patterns",
        {"mlflow_server_allowed_hosts": ["localhost:*"]},
    ),
    (
        "allowed host any",
        "server",
        {"mlflow_server_allowed_hosts": ["localhost:*", "*"]},
        "without a bare '*' (any host)",
        {"mlflow_server_allowed_hosts": ["localhost:*"]},
    ),
    (
        "environment name with a newline",
        "server",
        {"mlflow_server_env": {"A" + INJECT: "x"}},
        "mlflow_server_env must map variable names",
        {"mlflow_server_env": {"TZ": "UTC"}},
    ),
    (
        "environment value with a newline",
        "server",
        {"mlflow_server_env": {"TZ": "UTC" + INJECT}},
        "mlflow_server_env must map variable names",
        {"mlflow_server_env": {"TZ": "UTC"}},
    ),
    (
        "environment that sets the Gateway's passphrase",
        "server",
        {"mlflow_server_env": {"MLFLOW_CRYPTO_KEK_PASSPHRASE": "a-passphrase-in-the-compose-file-0123456789"}},
        "mlflow_server_env must not set MLFLOW_CRYPTO_KEK_PASSPHRASE",
        {"mlflow_server_env": {"TZ": "UTC"}},
    ),
    (
        "Gateway passphrase shorter than 32 characters",
        "server",
        {"mlflow_server_kek_passphrase": "short-passphrase"},
        "mlflow_server_kek_passphrase must be empty (the role then generates one) or a one-line passphrase of at least",
        {"mlflow_server_kek_passphrase": "a-passphrase-from-the-vault-0123456789"},
    ),
    (
        "webhook key that is no Fernet key",
        "server",
        {"mlflow_server_webhook_key": "not-a-fernet-key" + INJECT},
        "mlflow_server_webhook_key must be empty (the role then generates one) or a Fernet key",
        # No other key is valid on a deployed server (the role refuses to replace the one MLflow
        # has: auth test_9); the Gateway switch shows that the fingerprint sees a change.
        {"mlflow_server_ai_gateway": False},
    ),
    (
        "extra argument that drops MLflow's security middleware",
        "server",
        {"mlflow_server_extra_args": ["--gunicorn-opts", "--timeout 120"]},
        "mlflow_server_extra_args must not use --gunicorn-opts, --waitress-opts or --dev",
        {"mlflow_server_extra_args": ["--uvicorn-opts", "--timeout-keep-alive 120"]},
    ),
    (
        "extra argument with a newline",
        "server",
        {"mlflow_server_extra_args": ["--x" + INJECT]},
        "mlflow_server_extra_args must be one-line strings",
        {"mlflow_server_extra_args": ["--static-prefix", "/ml"]},
    ),
    (
        "workers 4 with a newline",
        "server",
        {"mlflow_server_workers": "4\n"},
        "mlflow_server_workers must be auto or a plain number",
        {"mlflow_server_workers": 3},
    ),
    (
        "gc schedule injecting a unit line",
        "server",
        {"mlflow_server_gc_schedule": f"daily\nExecStartPre=/bin/touch {WITNESS}"},
        "mlflow_server_gc_schedule must be empty or a systemd calendar",
        {"mlflow_server_gc_schedule": "daily"},
    ),
    (
        "gc age with a newline",
        "server",
        {"mlflow_server_gc_schedule": "daily", "mlflow_server_gc_older_than": "30d\n"},
        "mlflow_server_gc_older_than must be a duration",
        {"mlflow_server_gc_schedule": "daily", "mlflow_server_gc_older_than": "7d"},
    ),
    (
        "trace retention injecting a shell command",
        "server",
        {"mlflow_server_gc_schedule": "daily", "mlflow_server_trace_retention": f"1d; touch {WITNESS}"},
        "mlflow_server_trace_retention must be empty or a duration",
        {"mlflow_server_gc_schedule": "daily", "mlflow_server_trace_retention": "90d"},
    ),
    (
        "trace retention without a gc schedule",
        "server",
        {"mlflow_server_trace_retention": "90d"},
        "mlflow_server_trace_retention runs on the gc timer",
        {"mlflow_server_gc_schedule": "daily", "mlflow_server_trace_retention": "90d"},
    ),
    (
        "backup dir climbing out with ..",
        "server",
        {"mlflow_server_backup": True, "mlflow_server_backup_dir": "/var/backups/../../etc"},
        "mlflow_server_backup_dir must be an absolute path outside",
        {"mlflow_server_backup": True},
    ),
    (
        "purge of a directory the role did not make",
        "server",
        {"mlflow_server_state": "absent", "mlflow_server_purge_data": True, "mlflow_server_store_dir": "/srv/not-ours"},
        "which does not carry this role's marker",
        {"mlflow_server_state": "absent"},
    ),
    # --- the client role (the member's ssh config) ---
    (
        "client alias with a trailing newline",
        "client",
        {"mlflow_client_host_alias": "scratch\n"},
        "mlflow_client_host_alias must be a non-empty name",
        {"mlflow_client_host_alias": "scratch-b"},
    ),
    (
        "client hostname running a command",
        "client",
        {"mlflow_client_hostname": f"$(touch {WITNESS})"},
        "mlflow_client_hostname must be the server's DNS name",
        {"mlflow_client_hostname": "192.0.2.8"},
    ),
    (
        "client hostname adding a ProxyCommand",
        "client",
        {"mlflow_client_hostname": f"192.0.2.7\n  ProxyCommand touch {WITNESS}"},
        "mlflow_client_hostname must be",
        {"mlflow_client_hostname": "mlflow.example.org"},
    ),
    (
        "client local port 5_000",
        "client",
        {"mlflow_client_local_port": "5_000"},
        "mlflow_client_local_port must be between 1 and 65535, in digits only",
        {"mlflow_client_local_port": 5003},
    ),
    (
        "client ssh option ProxyCommand",
        "client",
        {"mlflow_client_ssh_options": {"ProxyCommand": f"touch {WITNESS}"}},
        "mlflow_client_ssh_options must",
        {"mlflow_client_ssh_options": {"Compression": "yes"}},
    ),
    (
        "client identity file with a newline",
        "client",
        {"mlflow_client_identity_file": "~/.ssh/id\nProxyCommand x"},
        "mlflow_client_identity_file must be empty or",
        {"mlflow_client_identity_file": "~/.ssh/id_other"},
    ),
    # --- onboarding (accounts and keys on the server) ---
    (
        "member on root",
        "onboard",
        {"mlflow_team": [member(server_user="root")]},
        "server_user must be a lower-case account name other than root",
        {"mlflow_team": [member()]},
    ),
    (
        "member on a system account",
        "onboard",
        {"mlflow_team": [member(server_user="daemon")]},
        "server_user daemon is a system account",
        {"mlflow_team": [member()]},
    ),
    (
        "member on an account onboarding did not make",
        "onboard",
        {"mlflow_team": [member(server_user="legacy")]},
        "server_user legacy is an existing account that onboarding did not create",
        {"mlflow_team": [member()]},
    ),
    (
        "member key of two lines",
        "onboard",
        {
            "mlflow_team": [
                member(
                    public_key=KEY.with_suffix(".pub").read_text().strip() + '\ncommand="touch /tmp/x" ssh-ed25519 AAAA'
                )
            ]
        },
        "public_key must be one OpenSSH public key on one line",
        {"mlflow_team": [member()]},
    ),
    (
        "member access admin",
        "onboard",
        {"mlflow_team": [member(access="admin")]},
        "access must be tunnel or shell",
        {"mlflow_team": [member(access="shell")]},
    ),
    (
        "member name with a newline",
        "onboard",
        {"mlflow_team": [member(name="zoe\nx")]},
        "name must be letters, digits",
        {"mlflow_team": [member(name="zoe-b")]},
    ),
    (
        "MLflow port for onboarding adding an sshd line",
        "onboard",
        {"mlflow_team_server_port": "500\nPermitOpen any"},
        "argument 'mlflow_team_server_port' is of type str and we were unable to convert to int",
        {"mlflow_team_server_port": 501},
    ),
    (
        "MLflow port for onboarding adding an sshd line, by its name before 0.5.0",
        "onboard",
        {"mlflow_onboard_server_port": "500\nPermitOpen any"},
        "(or mlflow_onboard_server_port, its name before 0.5.0; by default the server's mlflow_server_port) must be",
        {"mlflow_onboard_server_port": 501},
    ),
]


def playbook(name, extra, check=False):
    """ansible-playbook playbooks/<name> from the repo root on the scenario's inventory; (rc, changed, output)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump(extra, handle)
        handle.flush()
        # The inventory directory: the controller's group (mlflow_clients) is in a file of its own there.
        inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
        command = ["ansible-playbook", f"playbooks/{name}", "-i", inventory, "-e", f"@{handle.name}"]
        command += ["--check"] if check else []
        result = subprocess.run(
            command, cwd=PROJECT, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
    out = result.stdout + result.stderr
    return result.returncode, changed_in(out), out


def changed_in(out):
    """The changed count of every host in the recap, summed (colours taken out)."""
    return sum(int(count) for count in re.findall(r"changed=(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", out)))


def run_case(target, extra, check=False):
    if target == "server":
        return playbook(
            "site.yml", {**extra, "mlflow_server_image_archive": ""} if "mlflow_server_image" in extra else extra, check
        )
    if target == "onboard":
        return playbook("onboard.yml", extra, check)
    # The client role on a scratch copy of the member's config, with its own sockets and helper.
    scratch = Path(tempfile.mkdtemp(prefix="bad-input-"))
    control = short_dir("cm-")
    (scratch / ".ssh").mkdir()
    shutil.copyfile(CONFIG, scratch / ".ssh" / "config")
    before = (scratch / ".ssh" / "config").read_bytes()
    base = {
        "mlflow_client_user": "root",
        "mlflow_client_hostname": "192.0.2.7",
        "mlflow_client_host_alias": "scratch",
        "mlflow_client_ssh_config_path": str(scratch / ".ssh" / "config"),
        "mlflow_client_control_dir": str(control / "cm"),
        "mlflow_client_tunnel_helper_dir": str(scratch / "bin"),
    }
    result = run_client_role({**base, **extra}, *(["--check"] if check else []))
    after = (scratch / ".ssh" / "config").read_bytes()
    shutil.rmtree(scratch)
    shutil.rmtree(control)
    out = result.stdout + result.stderr
    changed = changed_in(out)
    # The client's file is the scratch config: report whether it changed in the output's place.
    return result.returncode, changed, out + f"\n[config {'unchanged' if after == before else 'changed'}]"


def fingerprint(host, target):
    if target == "client":
        return CONFIG.read_bytes()
    files = SERVER_FILES if target == "server" else ACCOUNT_FILES
    listing = host.check_output(
        f"sha256sum {' '.join(files)} 2>/dev/null; ls -la /home; docker inspect -f '{{{{.Id}}}}' mlflow-server"
    )
    return listing


def valid_key(case):
    """A case's valid run: its target and its valid variables."""
    return case[1], json.dumps(case[4], sort_keys=True)


@pytest.fixture(scope="module")
def outcomes(host):
    """Every case's bad run (with fingerprints around them all) and valid check run, four at a time."""
    # A directory with data that this role did not make, for the purge case.
    host.check_output("mkdir -p /srv/not-ours && echo data > /srv/not-ours/keep")
    before = {target: fingerprint(host, target) for target in ("server", "client", "onboard")}
    # Each distinct valid run once: the same variables for the same target give the same outcome.
    valid_runs = list(dict.fromkeys(map(valid_key, CASES)))
    jobs = [(case[1], case[2], False) for case in CASES] + [(t, json.loads(v), True) for t, v in valid_runs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: run_case(job[0], job[1], check=job[2]), jobs))
    after = {target: fingerprint(host, target) for target in ("server", "client", "onboard")}
    valid = dict(zip(valid_runs, results[len(CASES) :], strict=True))
    return {
        "bad": results[: len(CASES)],
        "valid": [valid[valid_key(case)] for case in CASES],
        "before": before,
        "after": after,
    }


@pytest.mark.parametrize(("case", "target", "bad", "message", "valid"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_any_change(host, outcomes, case, target, bad, message, valid):
    index = [c[0] for c in CASES].index(case)
    rc, changed, out = outcomes["bad"][index]
    assert rc != 0, out[-2000:]
    assert message in out, out[-3000:]
    assert changed == 0, out[-2000:]
    if target == "client":
        assert "[config unchanged]" in out
    assert outcomes["after"][target] == outcomes["before"][target]
    assert not host.file(WITNESS).exists and not os.path.exists(WITNESS)
    # The valid value for the same variable would change something: the fingerprint can see it.
    valid_rc, valid_changed, valid_out = outcomes["valid"][index]
    assert valid_rc == 0 and valid_changed > 0, valid_out[-3000:]
    if target == "client":
        # Check mode writes nothing; a real run on the scratch copy does change it.
        real_rc, _changed, real_out = run_case(target, valid)
        assert real_rc == 0 and "[config changed]" in real_out, real_out[-2000:]

"""MLflow's credentials for carol (her PC is the target): ~/.mlflow/credentials for one alias,
an env file for another, never the password in Ansible's output, and absent removing them."""

import configparser
import os
import subprocess
import sys

import pytest
from conftest import run_client_role

testinfra_hosts = ["tunnel-server"]

# configparser interpolates %, and the env file is sourced by sh: both must survive.
PASSWORD = "p%ss w'rd-1234"
PASSWORD_B = "second$password-5678"
READ_CREDS = (
    "from mlflow.utils.credentials import read_mlflow_creds as r; c = r(); print(c.username, c.password, sep=chr(10))"
)


def carol(alias, port, **extra):
    return {
        "client_host": "tunnel-server",
        "mlflow_client_user": "carol",
        "mlflow_client_host_alias": alias,
        "mlflow_client_hostname": "127.0.0.1",
        "mlflow_client_local_port": port,
        **extra,
    }


def role(extra, *flags):
    result = run_client_role(extra, *flags)
    return result, result.stdout + result.stderr


def mlflow_reads(host, tmp_path):
    """What the real mlflow client makes of carol's ~/.mlflow/credentials (copied to a scratch HOME)."""
    (tmp_path / ".mlflow").mkdir(exist_ok=True)
    (tmp_path / ".mlflow" / "credentials").write_text(host.file("/home/carol/.mlflow/credentials").content_string)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")} | {"HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", READ_CREDS], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.fixture(scope="module")
def credentials_written():
    result, out = role(
        carol("credlab", 15021, mlflow_client_tracking_username="carol", mlflow_client_tracking_password=PASSWORD),
        "-v",
    )
    yield result, out
    for alias in ("credlab-b", "credlab"):
        run_client_role(carol(alias, 15021, mlflow_client_state="absent"))


def test_credentials_file_is_private_and_read_by_mlflow(host, credentials_written, tmp_path):
    result, out = credentials_written
    assert result.returncode == 0, out
    assert PASSWORD not in out
    directory, credentials = host.file("/home/carol/.mlflow"), host.file("/home/carol/.mlflow/credentials")
    assert (directory.user, directory.group, directory.mode) == ("carol", "carol", 0o700)
    assert (credentials.user, credentials.group, credentials.mode) == ("carol", "carol", 0o600)
    ini = configparser.ConfigParser()
    ini.read_string(credentials.content_string)
    assert ini.sections() == ["mlflow"]
    assert sorted(ini["mlflow"]) == ["mlflow_tracking_password", "mlflow_tracking_username"]
    assert mlflow_reads(host, tmp_path) == ["carol", PASSWORD]


def test_another_alias_does_not_overwrite_them_and_gets_an_env_file(host, credentials_written):
    before = host.file("/home/carol/.mlflow/credentials").content_string
    refused, out = role(
        carol("credlab-b", 15022, mlflow_client_tracking_username="carol2", mlflow_client_tracking_password=PASSWORD_B)
    )
    assert refused.returncode != 0
    assert "already holds the credentials of Host credlab" in out
    assert "set mlflow_client_credentials_store to env for credlab-b" in out
    assert "changed=0" in refused.stdout
    assert PASSWORD_B not in out
    assert host.file("/home/carol/.mlflow/credentials").content_string == before

    written, out = role(
        carol(
            "credlab-b",
            15022,
            mlflow_client_tracking_username="carol2",
            mlflow_client_tracking_password=PASSWORD_B,
            mlflow_client_credentials_store="env",
        ),
        "-v",
    )
    assert written.returncode == 0, out
    assert PASSWORD_B not in out
    env_file = host.file("/home/carol/.mlflow/credlab-b.env")
    assert (env_file.user, env_file.mode) == ("carol", 0o600)
    sourced = host.check_output(
        "runuser -u carol -- sh -c '. ~/.mlflow/credlab-b.env;"
        ' printf "%s\\n" "$MLFLOW_TRACKING_URI" "$MLFLOW_TRACKING_USERNAME" "$MLFLOW_TRACKING_PASSWORD"\''
    )
    assert sourced.splitlines() == ["http://127.0.0.1:15022", "carol2", PASSWORD_B]
    assert host.file("/home/carol/.mlflow/credentials").content_string == before


def test_absent_removes_only_this_aliases_credentials(host, credentials_written):
    result, out = role(carol("credlab-b", 15022, mlflow_client_state="absent"))
    assert result.returncode == 0, out
    assert not host.file("/home/carol/.mlflow/credlab-b.env").exists
    assert host.file("/home/carol/.mlflow/credentials").exists
    result, out = role(carol("credlab", 15021, mlflow_client_state="absent"))
    assert result.returncode == 0, out
    assert not host.file("/home/carol/.mlflow/credentials").exists
    config = host.file("/home/carol/.ssh/config").content_string
    assert "credlab" not in config
    # Carol's tunnel unit's alias is untouched.
    assert "Host mlflowself\n" in config

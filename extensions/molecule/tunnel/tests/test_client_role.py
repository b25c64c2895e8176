"""The client role alone on the controller, against scratch copies of the member's config."""

import os
import pwd
import shutil
import subprocess

import pytest
from conftest import ALIAS, ALIAS_B, CONFIG, run_client_role, strip_blocks

VALID = {"mlflow_client_user": "root", "mlflow_client_hostname": "192.0.2.7", "mlflow_client_host_alias": "scratch"}


@pytest.fixture
def config_copy(tmp_path):
    """The member's config after converge, copied to a scratch ~/.ssh with loose modes."""
    (tmp_path / ".ssh").mkdir()
    copy = tmp_path / ".ssh" / "config"
    shutil.copyfile(CONFIG, copy)
    copy.chmod(0o644)
    return copy


def test_absent_removes_only_its_own_block(config_copy):
    before = config_copy.read_bytes().decode()
    result = run_client_role(
        {
            "mlflow_client_state": "absent",
            "mlflow_client_host_alias": ALIAS_B,
            "mlflow_client_ssh_config_path": str(config_copy),
        }
    )
    assert result.returncode == 0, result.stdout
    after = config_copy.read_bytes().decode()
    assert f"Host {ALIAS_B}\n" in before
    assert after == strip_blocks(before, [ALIAS_B])
    assert f"Host {ALIAS}\n" in after


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"mlflow_client_host_alias": "my server"}, "mlflow_client_host_alias must be a non-empty name"),
        ({"mlflow_client_host_alias": ""}, "mlflow_client_host_alias must be a non-empty name"),
        ({"mlflow_client_local_port": 70000}, "mlflow_client_local_port must be between 1 and 65535"),
        ({"mlflow_client_remote_port": 0}, "mlflow_client_remote_port must be between 1 and 65535"),
        ({"mlflow_client_ssh_port": "ssh"}, "argument 'mlflow_client_ssh_port' is of type str"),
        ({"mlflow_client_hostname": ""}, "mlflow_client_hostname must be"),
        ({"mlflow_client_ssh_options": {"LocalForward": "1 x:2"}}, "mlflow_client_ssh_options must"),
        ({"mlflow_client_user": "no-such-member"}, "mlflow_client_user 'no-such-member' is not an account"),
    ],
)
def test_bad_input_fails_before_any_change(config_copy, bad, message):
    before = config_copy.read_bytes()
    result = run_client_role({**VALID, "mlflow_client_ssh_config_path": str(config_copy), **bad})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "changed=0" in result.stdout
    assert config_copy.read_bytes() == before
    assert config_copy.stat().st_mode & 0o777 == 0o644


def test_files_belong_to_the_member_not_to_ansible(tmp_path):
    nobody = pwd.getpwnam("nobody")
    config = tmp_path / "nobody" / ".ssh" / "config"
    extra = {**VALID, "mlflow_client_user": "nobody", "mlflow_client_ssh_config_path": str(config)}
    first = run_client_role(extra)
    assert first.returncode == 0, first.stdout
    for path, mode in ((config.parent, 0o700), (config, 0o600)):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert path.stat().st_mode & 0o7777 == mode
    # The default User is the member's own name.
    assert "  User nobody\n" in config.read_text()
    second = run_client_role(extra)
    assert "changed=0" in second.stdout


def test_tracking_uri_is_exported_for_one_alias_and_removed_with_it(tmp_path):
    profile = tmp_path / "profile"
    profile.write_text("umask 022\n")
    profile.chmod(0o600)
    extra = {
        **VALID,
        "mlflow_client_ssh_config_path": str(tmp_path / "ssh" / "config"),
        "mlflow_client_local_port": 15123,
        "mlflow_client_set_tracking_uri": True,
        "mlflow_client_profile_path": str(profile),
    }
    assert run_client_role(extra).returncode == 0
    exported = subprocess.run(
        ["sh", "-c", f". {profile}; echo $MLFLOW_TRACKING_URI"], capture_output=True, text=True, check=True
    )
    assert exported.stdout.strip() == "http://localhost:15123"
    assert run_client_role({**extra, "mlflow_client_state": "absent"}).returncode == 0
    assert profile.read_text() == "umask 022\n"
    assert "Host scratch" not in (tmp_path / "ssh" / "config").read_text()
    # An existing profile keeps its own mode.
    assert os.stat(profile).st_mode & 0o777 == 0o600

"""The client role alone on the controller, against scratch copies of the member's config."""

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import (
    ALIAS,
    ALIAS_B,
    CLIENT,
    CONFIG,
    KEY,
    SERVER_USER,
    free_port,
    mlflow_tunnel,
    port_is_free,
    run_client_role,
    server_address,
    short_dir,
    strip_blocks,
)

VALID = {"mlflow_client_user": "root", "mlflow_client_hostname": "192.0.2.7", "mlflow_client_host_alias": "scratch"}


@pytest.fixture
def scratch(tmp_path):
    """Extra vars that keep a role run's helper and control sockets out of the scenario's own."""
    control = short_dir("cm-")
    yield {
        "mlflow_client_control_dir": str(control / "cm"),
        "mlflow_client_tunnel_helper_dir": str(tmp_path / "bin"),
    }
    shutil.rmtree(control)


@pytest.fixture
def config_copy(tmp_path):
    """The member's config after converge, copied to a scratch ~/.ssh with loose modes."""
    (tmp_path / ".ssh").mkdir()
    copy = tmp_path / ".ssh" / "config"
    shutil.copyfile(CONFIG, copy)
    copy.chmod(0o644)
    return copy


def test_absent_removes_only_its_own_block(config_copy, scratch):
    before = config_copy.read_bytes().decode()
    result = run_client_role(
        {
            **scratch,
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


WITNESS = "/tmp/mlflow-client-injected"
SECRET = "never-shown-password-1234"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"mlflow_client_host_alias": "my server"}, "mlflow_client_host_alias must be a non-empty name"),
        ({"mlflow_client_host_alias": ""}, "mlflow_client_host_alias must be a non-empty name"),
        # A trailing newline used to add a new block on every run.
        ({"mlflow_client_host_alias": "scratch\n"}, "mlflow_client_host_alias must be a non-empty name"),
        ({"mlflow_client_shell_alias": "scratch"}, "mlflow_client_shell_alias must be empty or a name"),
        ({"mlflow_client_local_port": 70000}, "mlflow_client_local_port must be between 1 and 65535"),
        (
            {"mlflow_client_local_port": "5000\n"},
            "mlflow_client_local_port must be between 1 and 65535, in digits only",
        ),
        ({"mlflow_client_local_port": "5_000"}, "mlflow_client_local_port must be between 1 and 65535, in digits only"),
        ({"mlflow_client_remote_port": 0}, "mlflow_client_remote_port must be between 1 and 65535"),
        ({"mlflow_client_remote_port": "5e3"}, "mlflow_client_remote_port must be between 1 and 65535, in digits only"),
        ({"mlflow_client_ssh_port": "ssh"}, "argument 'mlflow_client_ssh_port' is of type str"),
        ({"mlflow_client_ssh_port": "22\n"}, "mlflow_client_ssh_port must be between 1 and 65535, in digits only"),
        (
            {"mlflow_client_server_alive_interval": "30\n"},
            "mlflow_client_server_alive_interval must be",
        ),
        ({"mlflow_client_hostname": ""}, "mlflow_client_hostname must be the server's DNS name or IP address"),
        # This one used to run under the member's trailing `Host *` with a ProxyCommand.
        ({"mlflow_client_hostname": f"$(touch {WITNESS})"}, "mlflow_client_hostname must be the server's DNS name"),
        (
            {"mlflow_client_hostname": f"$(touch${{IFS}}{WITNESS})"},
            "mlflow_client_hostname must be the server's DNS name",
        ),
        ({"mlflow_client_hostname": f"192.0.2.7\n  ProxyCommand touch {WITNESS}"}, "mlflow_client_hostname must be"),
        ({"mlflow_client_hostname": "-oProxyCommand=x"}, "mlflow_client_hostname must be"),
        (
            {"mlflow_client_ssh_user": "alice\nProxyCommand x"},
            "mlflow_client_ssh_user must be empty or an account name",
        ),
        ({"mlflow_client_user": "root\n"}, "mlflow_client_user must be empty or a local account name"),
        ({"mlflow_client_user": "no-such-member"}, "mlflow_client_user 'no-such-member' is not an account"),
        ({"mlflow_client_identity_file": "~/.ssh/id\nProxyCommand x"}, "mlflow_client_identity_file must be empty or"),
        ({"mlflow_client_identity_file": '/tmp/a"b'}, "mlflow_client_identity_file must be empty or"),
        # A newline in the config path used to inject `ExecStartPre=` into the tunnel unit.
        (
            {"mlflow_client_ssh_config_path": f"/tmp/x/config\nExecStartPre=/bin/touch {WITNESS}"},
            "mlflow_client_ssh_config_path must be empty or an absolute path",
        ),
        ({"mlflow_client_ssh_config_path": "relative/config"}, "mlflow_client_ssh_config_path must be empty or"),
        (
            {"mlflow_client_set_tracking_uri": True, "mlflow_client_profile_path": "/tmp/profile\nx"},
            "mlflow_client_profile_path must be empty or an absolute path",
        ),
        ({"mlflow_client_control_dir": "/tmp/cm\nx"}, "mlflow_client_control_dir must be empty or an absolute path"),
        ({"mlflow_client_control_dir": "/tmp/" + "c" * 90}, "ssh needs at most 86"),
        (
            {"mlflow_client_tunnel_helper_dir": "bin"},
            "mlflow_client_tunnel_helper_dir must be empty or an absolute path",
        ),
        ({"mlflow_client_ssh_options": {"LocalForward": "1 x:2"}}, "mlflow_client_ssh_options must"),
        ({"mlflow_client_ssh_options": {"ProxyCommand": "nc %h %p"}}, "mlflow_client_ssh_options must"),
        ({"mlflow_client_ssh_options": {"Foo\nBar": "yes"}}, "mlflow_client_ssh_options must"),
        ({"mlflow_client_ssh_options": {"Compression": "yes\nProxyCommand x"}}, "mlflow_client_ssh_options must"),
        ({"mlflow_client_ssh_options": {"Compression": "yes # x"}}, "mlflow_client_ssh_options must"),
        # Allowed by the allowlist, refused by ssh itself (blockinfile's validate: ssh -G).
        ({"mlflow_client_ssh_options": {"NoSuchOption": "yes"}}, "Bad configuration option: nosuchoption"),
        ({"mlflow_client_tracking_username": "alice\n"}, "mlflow_client_tracking_username must be empty or a name"),
        (
            {"mlflow_client_tracking_username": "alice", "mlflow_client_tracking_password": SECRET + "\nx"},
            "mlflow_client_tracking_password must be one line",
        ),
        ({"mlflow_client_tracking_password": SECRET}, "must be given together"),
    ],
)
def test_bad_input_fails_before_any_change(config_copy, scratch, bad, message):
    before = config_copy.read_bytes()
    extra = {**VALID, **scratch, "mlflow_client_ssh_config_path": str(config_copy), **bad}
    result = run_client_role(extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in out
    assert "changed=0" in result.stdout
    assert config_copy.read_bytes() == before
    assert config_copy.stat().st_mode & 0o777 == 0o644
    assert not os.path.exists(WITNESS)
    assert SECRET not in out


@pytest.fixture
def nobodys_home():
    """A home that belongs to `nobody`, as a member's does: the role writes there as the member."""
    top = short_dir("home-")
    top.chmod(0o755)
    home = top / "nobody"
    home.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    yield home
    shutil.rmtree(top)


def test_files_belong_to_the_member_not_to_ansible(nobodys_home):
    nobody = pwd.getpwnam("nobody")
    config = nobodys_home / ".ssh" / "config"
    control = nobodys_home / ".ssh" / "mlflow-cm"
    extra = {
        **VALID,
        "mlflow_client_user": "nobody",
        "mlflow_client_ssh_config_path": str(config),
        "mlflow_client_control_dir": str(control),
        "mlflow_client_tunnel_helper_dir": str(nobodys_home / "bin"),
        # The role writes as the member. This controller has no sudo, and the venv's Python
        # lives under root's home, which `nobody` cannot read: su and the system's Python.
        "ansible_become_method": "su",
        "ansible_become_flags": "-s /bin/sh",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    first = run_client_role(extra)
    assert first.returncode == 0, first.stdout
    helper = nobodys_home / "bin" / "mlflow-tunnel"
    for path, mode in ((config.parent, 0o700), (config, 0o600), (control, 0o700), (helper, 0o755)):
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (nobody.pw_uid, nobody.pw_gid), path
        assert os.stat(path).st_mode & 0o7777 == mode, path
    # The default User is the member's own name.
    assert "  User nobody\n" in config.read_text()
    second = run_client_role(extra)
    assert "changed=0" in second.stdout


def test_tracking_uri_is_exported_for_one_alias_and_removed_with_it(tmp_path, scratch):
    profile = tmp_path / "profile"
    profile.write_text("umask 022\n")
    profile.chmod(0o600)
    extra = {
        **VALID,
        **scratch,
        "mlflow_client_ssh_config_path": str(tmp_path / "ssh" / "config"),
        "mlflow_client_local_port": 15123,
        "mlflow_client_set_tracking_uri": True,
        "mlflow_client_profile_path": str(profile),
    }
    assert run_client_role(extra).returncode == 0
    exported = subprocess.run(
        ["sh", "-c", f". {profile}; echo $MLFLOW_TRACKING_URI"], capture_output=True, text=True, check=True
    )
    assert exported.stdout.strip() == "http://127.0.0.1:15123"
    assert run_client_role({**extra, "mlflow_client_state": "absent"}).returncode == 0
    assert profile.read_text() == "umask 022\n"
    assert "Host scratch" not in (tmp_path / "ssh" / "config").read_text()
    # An existing profile keeps its own mode.
    assert os.stat(profile).st_mode & 0o777 == 0o600


def test_absent_closes_the_running_tunnel_then_removes_only_its_own_files(tmp_path, scratch):
    """Two aliases in one config, one tunnel open: absent closes it and frees its port; the
    helper and the control directory stay while the other alias needs them, then go with it."""
    config = tmp_path / ".ssh" / "config"
    config.parent.mkdir()
    config.write_text("Host gitlab\n  User git\n")
    profile = tmp_path / "profile"
    port = free_port()
    common = {
        **scratch,
        "mlflow_client_user": "root",
        "mlflow_client_ssh_config_path": str(config),
        "mlflow_client_hostname": server_address(),
        "mlflow_client_ssh_user": SERVER_USER,
        "mlflow_client_identity_file": str(KEY),
        "mlflow_client_ssh_options": {"UserKnownHostsFile": str(CLIENT / ".ssh" / "known_hosts")},
    }
    closing = {
        **common,
        "mlflow_client_host_alias": "closing",
        "mlflow_client_local_port": port,
        "mlflow_client_set_tracking_uri": True,
        "mlflow_client_profile_path": str(profile),
    }
    staying = {**common, "mlflow_client_host_alias": "staying", "mlflow_client_local_port": free_port()}
    for extra in (closing, staying):
        result = run_client_role(extra)
        assert result.returncode == 0, result.stdout
    helper = tmp_path / "bin" / "mlflow-tunnel"
    control = Path(scratch["mlflow_client_control_dir"])
    opened = mlflow_tunnel("open", "closing", helper=helper, config=config)
    assert opened.returncode == 0, opened.stderr
    assert not port_is_free(port)
    assert (control / "closing").is_socket()

    result = run_client_role({**closing, "mlflow_client_state": "absent"})
    assert result.returncode == 0, result.stdout
    assert "Close the running tunnel with ssh -O exit closing" in result.stdout
    assert port_is_free(port)
    assert not (control / "closing").exists()
    assert mlflow_tunnel("status", "staying", helper=helper, config=config).returncode == 3
    text = config.read_text()
    assert "Host closing" not in text and "Host staying\n" in text and text.startswith("Host gitlab\n  User git\n")
    assert "MLFLOW_TRACKING_URI" not in profile.read_text()
    # Still needed by "staying".
    assert helper.exists() and control.is_dir()

    result = run_client_role({**staying, "mlflow_client_state": "absent"})
    assert result.returncode == 0, result.stdout
    assert not helper.exists() and not control.exists()
    assert config.read_text() == "Host gitlab\n  User git\n"
    # Nothing else: the member's own directories stay.
    assert config.parent.is_dir() and (tmp_path / "bin").is_dir()

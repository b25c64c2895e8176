"""The optional extras on carol's PC (the target itself): a systemd user unit
that keeps the tunnel up, and MLFLOW_TRACKING_URI in her profile."""

import time

from conftest import run_client_role

testinfra_hosts = ["tunnel-server"]

UNIT = "mlflow-tunnel-mlflowself.service"
PORT = 15001


def as_carol(host, command):
    """A command in carol's session environment, as she would type it."""
    uid = host.user("carol").uid
    return host.run(f"runuser -u carol -- env HOME=/home/carol XDG_RUNTIME_DIR=/run/user/{uid} {command}")


def user_systemctl(host, *args):
    return as_carol(host, f"systemctl --user {' '.join(args)}")


def mlflow_tunnel(host, *args):
    # Carol's helper, where the role puts it by default.
    return as_carol(host, f"/home/carol/.local/bin/mlflow-tunnel {' '.join(args)}")


def main_pid(host):
    return user_systemctl(host, "show", "--property=MainPID", "--value", UNIT).stdout.strip()


def healthy(host):
    probe = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=5).read())"
    return host.run(f'python3 -c "{probe}"').stdout.strip() == "b'OK'"


def wait_for(check, timeout=45):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1)
    return False


def test_unit_is_enabled_and_carries_the_tunnel(host):
    assert user_systemctl(host, "is-enabled", UNIT).stdout.strip() == "enabled"
    assert wait_for(lambda: healthy(host))


def test_unit_restarts_the_tunnel_after_a_failure(host):
    before = main_pid(host)
    assert before not in ("", "0")
    host.check_output(f"kill -KILL {before}")
    assert wait_for(lambda: main_pid(host) not in ("", "0", before) and healthy(host))


def test_with_the_unit_mlflow_tunnel_checks_closes_and_opens_through_it(host):
    assert wait_for(lambda: healthy(host))
    status = mlflow_tunnel(host, "status")
    assert status.rc == 0, status.stdout + status.stderr
    assert status.stdout.startswith(f"always-on: systemd user unit {UNIT} is active")
    assert f"MLflow answers on http://127.0.0.1:{PORT} (/health: OK)" in status.stdout
    # ssh's own check sees the unit's ssh as the control master.
    assert as_carol(host, "ssh -O check mlflowself").rc == 0

    closed = mlflow_tunnel(host, "close")
    assert closed.rc == 0, closed.stderr
    assert f"closed: stopped the systemd user unit {UNIT}; 127.0.0.1:{PORT} is free" in closed.stdout
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() == "inactive"
    assert f":{PORT} " not in host.check_output("ss -ltnH")
    assert mlflow_tunnel(host, "status").rc == 3

    opened = mlflow_tunnel(host, "open")
    assert opened.rc == 0, opened.stderr
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() == "active"
    assert wait_for(lambda: healthy(host))


def test_tracking_uri_is_in_carols_login_shell(host):
    uri = host.check_output("runuser -u carol -- bash -lc 'echo $MLFLOW_TRACKING_URI'")
    assert uri.strip() == f"http://127.0.0.1:{PORT}"


def test_absent_stops_the_unit_and_removes_only_its_own_lines(host):
    result = run_client_role(
        {
            "client_host": "tunnel-server",
            "mlflow_client_state": "absent",
            "mlflow_client_user": "carol",
            "mlflow_client_host_alias": "mlflowself",
        }
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not host.file(f"/home/carol/.config/systemd/user/{UNIT}").exists
    assert user_systemctl(host, "is-active", UNIT).stdout.strip() != "active"
    assert f":{PORT} " not in host.check_output("ss -ltnH")
    assert "mlflowself" not in host.file("/home/carol/.ssh/config").content_string
    # Her only tunnel is gone, and with it the helper and the control socket directory.
    assert not host.file("/home/carol/.local/bin/mlflow-tunnel").exists
    assert not host.file("/home/carol/.ssh/mlflow-cm").exists
    assert host.file("/home/carol/.ssh").is_directory
    profile = host.file("/home/carol/.profile").content_string
    assert "MLFLOW_TRACKING_URI" not in profile
    # The rest of Debian's skeleton profile is still there.
    assert 'if [ -d "$HOME/bin" ]' in profile

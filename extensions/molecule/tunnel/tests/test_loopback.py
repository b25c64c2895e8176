"""A host on the server's network segment cannot reach MLflow on 127.0.0.1:500 or at the
container's own address; members still can, through ssh.

Docker Engine < 28 (Debian 13 ships 26.1) answers a SYN that a LAN neighbour sends to
127.0.0.1:<published port> (moby/moby#45610), and routes one sent to the container's
address into the bridge (moby/moby#49325). The server role's loopback guard drops both.
The neighbour is a container wired to the target by a veth pair
(../../shared/neighbour.py). Every test leaves the guard on and MLflow healthy, as the
files after this one expect; the reboot runs last of all (conftest.py says why).
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ALIAS, assert_run_lands_on_the_server, ports, server_address

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from neighbour import Neighbour, container_address

testinfra_hosts = ["tunnel-server"]

GUARD = "mlflow-loopback-guard.service"
RULE = "PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP"
SSHD, MLFLOW, IN_CONTAINER = 22, 500, 5000


def wait_for(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(2)
    return False


def mlflow_healthy(host):
    return host.run("docker inspect -f '{{.State.Health.Status}}' mlflow-server").stdout.strip() == "healthy"


def boot_state(host):
    """systemd's state once the boot is over; empty while PID 1 does not answer yet."""
    return host.run("systemctl is-system-running --wait").stdout.strip()


def guard_rule_present(host):
    return host.run(f"iptables -t raw -C {RULE}").rc == 0


@pytest.fixture(scope="module")
def neighbour(host):
    with Neighbour(host.backend.get_hostname()) as wired:
        yield wired


@pytest.fixture(autouse=True)
def leave_guard_on_and_mlflow_healthy(host):
    yield
    host.run(f"systemctl start {GUARD}")
    assert host.service(GUARD).is_running
    assert wait_for(lambda: mlflow_healthy(host), 180), "MLflow is not healthy after the test"


def assert_guarded(host, neighbour):
    """The guard is on, the neighbour gets nothing from 127.0.0.1:500 or the container's
    address, and that silence is the guard's doing."""
    assert host.service(GUARD).is_running
    assert host.service(GUARD).is_enabled
    container = container_address(host.backend.get_hostname())
    assert neighbour.syn(neighbour.target_ip, SSHD), "positive control: sshd on the LAN address must answer"
    assert not neighbour.syn("127.0.0.1", MLFLOW), "a LAN neighbour reaches MLflow on 127.0.0.1"
    assert not neighbour.syn(container, IN_CONTAINER), "a LAN neighbour reaches MLflow at the container's address"
    # Without the guard the same probes are answered: the ports are there and the probe works.
    host.check_output(f"systemctl stop {GUARD}")
    try:
        assert neighbour.syn("127.0.0.1", MLFLOW)
        assert neighbour.syn(container, IN_CONTAINER)
    finally:
        host.check_output(f"systemctl start {GUARD}")
    assert not neighbour.syn("127.0.0.1", MLFLOW)
    assert not neighbour.syn(container, IN_CONTAINER)


def test_neighbour_reaches_sshd_on_the_lan_address(neighbour):
    # The positive control: a miswired probe gets no answer from anything.
    assert neighbour.syn(neighbour.target_ip, SSHD)


def test_without_the_guard_a_neighbour_reaches_mlflow_on_loopback(host, neighbour):
    host.check_output(f"systemctl stop {GUARD}")
    assert not guard_rule_present(host), "stopping the guard must remove its rule"
    assert neighbour.syn("127.0.0.1", MLFLOW), "Docker on this target should answer (moby/moby#45610)"


def test_guard_drops_what_a_neighbour_sends_to_loopback(host, neighbour):
    assert guard_rule_present(host)
    assert host.run("ip6tables -t raw -C PREROUTING -d ::1/128 ! -i lo -j DROP").rc == 0
    assert not neighbour.syn("127.0.0.1", MLFLOW)
    assert neighbour.syn(neighbour.target_ip, SSHD)


def test_members_still_log_runs_through_the_tunnel_with_the_guard_on(host, tunnel, tmp_path):
    assert guard_rule_present(host)
    tunnel(ALIAS)
    assert_run_lands_on_the_server(host, ports()[0], tmp_path)


def test_guard_comes_back_within_a_minute_after_a_firewall_flush(host, neighbour):
    """A firewall reload (here a flush of the raw table's PREROUTING chain) takes the rules away
    while the guard's unit stays active; its timer puts them back."""
    for _attempt in range(3):
        host.check_output("iptables -t raw -F PREROUTING")
        assert host.service(GUARD).is_running
        assert not guard_rule_present(host)
        # The control: right after the flush, the hole is open, unless the timer (every 30 s)
        # put the rules back in between; then they are there again, and the flush is repeated.
        if neighbour.syn("127.0.0.1", MLFLOW):
            break
        assert guard_rule_present(host), "the neighbour's probe failed with the rules gone"
    else:
        pytest.fail("the timer put the rules back before each of three probes")
    assert wait_for(lambda: guard_rule_present(host), 75), "the guard's rules did not come back"
    assert not neighbour.syn("127.0.0.1", MLFLOW)
    assert not neighbour.syn(container_address(host.backend.get_hostname()), IN_CONTAINER)


def test_guard_survives_a_docker_restart(host, neighbour):
    host.check_output("systemctl restart docker")
    assert wait_for(lambda: mlflow_healthy(host), 180), "MLflow is not healthy after the Docker restart"
    assert_guarded(host, neighbour)


@pytest.mark.reboots_target
def test_guard_survives_a_reboot(host, neighbour, tunnel, tmp_path):
    name = host.backend.get_hostname()
    subprocess.run(["docker", "restart", "-t", "60", name], check=True, capture_output=True)
    assert wait_for(lambda: boot_state(host) in ("running", "degraded"), 120)
    assert boot_state(host) == "running", host.run("systemctl --failed").stdout
    assert wait_for(lambda: mlflow_healthy(host), 180), "MLflow is not healthy after the reboot"
    # The reboot gave the target a new network namespace; the old veth pair went with the old one.
    neighbour.wire()
    assert_guarded(host, neighbour)
    # Docker may have handed the restarted target another bridge address than the member's config names.
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tunnel(ALIAS, "-o", f"HostName={address}", "-o", f"HostKeyAlias={server_address()}")
    assert_run_lands_on_the_server(host, ports()[0], tmp_path)

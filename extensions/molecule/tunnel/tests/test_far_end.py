"""No other account on the server can stand in for MLflow at the far end of a member's tunnel.

The attack, mounted for real: mallory, an ordinary account on the server, listens where a
tunnel ends and logs what arrives, a member's Basic credentials included. Before 0.5.0 the
tunnel's far end was the name `localhost:5000`: sshd resolves it to ::1 first where IPv6 is
up (as on a real lab server), and any account may listen on [::1]:5000, or on 127.0.0.1:5000
whenever MLflow is stopped. Now the far end is the address 127.0.0.1 and a port below
net.ipv4.ip_unprivileged_port_start, which only root may listen on.

The target's IPv6 is off (a container's default); the fixture turns it on for lo, as a real
host has it, and off again.
"""

import base64
import socket
import subprocess

import pytest
from conftest import ALIAS, CLIENT, KEY, SHELL_USER, ports, raw_get, server_address, wait_until

testinfra_hosts = ["tunnel-server"]

MALLORY = "mallory"
# Listens on (address, port), answers like MLflow's /health, and logs every request it gets.
SQUATTER = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
server = socket.socket(family)
# As any listener would: the previous squatter's closed connections leave TIME_WAIT behind.
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen()
server.settimeout(120)
with open(sys.argv[3], "ab", buffering=0) as log:
    log.write(b"listening\n")
    while True:
        conn, _ = server.accept()
        log.write(conn.recv(65536))
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        conn.close()
"""
CREDENTIALS = "Basic " + base64.b64encode(b"alice:alices-mlflow-password").decode()


def as_mallory(host, command):
    return host.run(f"runuser -u {MALLORY} -- {command}")


def can_listen(host, address, port):
    """Whether mallory may listen on address:port; the kernel's own answer."""
    family = "socket.AF_INET6" if ":" in address else "socket.AF_INET"
    probe = f"import socket; s = socket.socket({family}); s.bind(('{address}', {port})); s.listen(); print('bound')"
    result = as_mallory(host, f'python3 -c "{probe}"')
    assert result.rc == 0 or "Permission denied" in result.stderr, result.stderr
    return result.rc == 0


class Squatter:
    """mallory's listener, started in the background on the server; read() gives its log."""

    def __init__(self, host, address, port):
        self.host, self.log = host, f"/tmp/squatter-{port}-{address.replace(':', '')}.log"
        host.run(f"rm -f {self.log}")
        host.check_output(f"cat > /tmp/squatter.py <<'EOF'\n{SQUATTER}\nEOF")
        as_mallory(host, f"sh -c 'nohup python3 /tmp/squatter.py {address} {port} {self.log} >/dev/null 2>&1 &'")
        assert wait_until(lambda: "listening" in self.read(), 10), f"mallory could not listen on {address}:{port}"

    def read(self):
        return self.host.run(f"cat {self.log} 2>/dev/null").stdout

    def stop(self):
        self.host.run(f"pkill -u {MALLORY} -f squatter.py")


@pytest.fixture(scope="module")
def server_with_ipv6(host):
    """mallory exists and lo has ::1, as on a real host; both undone afterwards."""
    host.check_output(f"id {MALLORY} || useradd --create-home --shell /bin/bash {MALLORY}")
    host.check_output("sysctl -q -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0")
    assert wait_until(lambda: "::1/128" in host.check_output("ip -6 addr show dev lo"), 10)
    yield host
    host.run(f"pkill -u {MALLORY}")
    host.check_output("sysctl -q -w net.ipv6.conf.lo.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1")


def request_through(port, path="/health"):
    """What a member's client gets through a tunnel on local `port`, with their credentials."""
    return raw_get(port, path, headers=f"Authorization: {CREDENTIALS}\r\n")


def plain_forward(remote, local_port):
    """ssh -N -L 127.0.0.1:<local_port>:<remote> as sam, whose key is unrestricted (a shell member)."""
    return subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-i", str(KEY), "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
         "-o", f"UserKnownHostsFile={CLIENT / '.ssh' / 'known_hosts'}", "-o", "StrictHostKeyChecking=accept-new",
         "-N", "-L", f"127.0.0.1:{local_port}:{remote}", f"{SHELL_USER}@{server_address()}"],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process):
    def up():
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    assert wait_until(up, 20), process.stderr.read() if process.poll() is not None else "no forward"


def test_positive_control_a_far_end_named_localhost_delivers_credentials_to_mallory(server_with_ipv6):
    """The configuration before 0.5.0: the forward's far end is the name localhost, on port 5000."""
    host = server_with_ipv6
    assert can_listen(host, "::1", 5000), "any account may listen on [::1]:5000"
    squatter = Squatter(host, "::1", 5000)
    port = free_port()
    forward = plain_forward("localhost:5000", port)
    try:
        wait_listening(port, forward)
        answer = request_through(port)
    finally:
        forward.terminate()
        forward.wait(timeout=20)
        squatter.stop()
    assert answer.endswith(b"OK")
    assert f"Authorization: {CREDENTIALS}" in squatter.read(), "sshd took localhost as ::1, where mallory listens"


def test_only_root_may_listen_on_mlflows_port_even_while_mlflow_is_stopped(server_with_ipv6):
    host = server_with_ipv6
    # Positive control: the probe can tell, as mallory may listen on MLflow's old port.
    assert can_listen(host, "127.0.0.1", 5000)
    assert not can_listen(host, "::1", 500)
    host.check_output("docker stop mlflow-server")
    try:
        assert not any(line.split()[3] == "127.0.0.1:500" for line in host.check_output("ss -ltnH").splitlines())
        assert not can_listen(host, "127.0.0.1", 500)
        assert not can_listen(host, "::1", 500)
    finally:
        host.check_output("docker start mlflow-server")
    assert wait_until(
        lambda: host.run("docker inspect -f '{{.State.Health.Status}}' mlflow-server").stdout.strip() == "healthy",
        180,
    )


def test_the_members_tunnel_reaches_mlflow_while_mallory_holds_every_port_she_can(server_with_ipv6, tunnel):
    """mallory on [::1]:5000 and 127.0.0.1:5000 (500 she may not take): the member's own alias,
    whose Host block forwards to 127.0.0.1:500, still gets the real MLflow, and she gets nothing."""
    host = server_with_ipv6
    squatters = [Squatter(host, "::1", 5000), Squatter(host, "127.0.0.1", 5000)]
    try:
        tunnel(ALIAS)
        version = request_through(ports()[0], "/version")
        health = request_through(ports()[0])
    finally:
        for squatter in squatters:
            squatter.stop()
    assert health.endswith(b"OK")
    assert version.rstrip().endswith(b"3.17.2"), version
    for squatter in squatters:
        assert "Authorization" not in squatter.read()


def test_the_far_end_is_an_address_in_every_place_that_names_it(host):
    block = (CLIENT / ".ssh" / "config").read_text()
    assert f"LocalForward 127.0.0.1:{ports()[0]} 127.0.0.1:500" in block
    assert "localhost" not in host.file("/etc/ssh/sshd_config.d/mlflow-members.conf").content_string.split("Match")[1]
    assert 'permitopen="127.0.0.1:500"' in host.file("/home/alice/.ssh/authorized_keys").content_string
    assert 'permitopen="localhost' not in host.file("/home/alice/.ssh/authorized_keys").content_string

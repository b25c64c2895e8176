"""A host on the same L2 segment as a Molecule target, to probe what the LAN can reach.

Docker Engine < 28 answers a TCP SYN that a neighbour sends to 127.0.0.1:<published
port> (moby/moby#45610). To send one, this starts a container of `mlops/neighbour`
(scapy, iproute2; images/neighbour) on the host engine with NET_RAW/NET_ADMIN and no
network of its own, and wires it to the target's network namespace with a veth pair:
a bridge such as docker0 would drop those frames before the target sees them. Each
end gets an address from a private /24; the target gets a static neighbour entry for
the neighbour, as a LAN host usually is in the ARP cache already (ARP from 127.0.0.1
is not answered). Names carry a random tag, so two scenarios can probe at once.

Needs root on the controller (ip, nsenter). Import it from a scenario's tests:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    from neighbour import Neighbour

    with Neighbour("tunnel-server") as neighbour:
        neighbour.syn(neighbour.target_ip, 22)   # True: a SYN-ACK came back
        neighbour.syn("127.0.0.1", 500)

A restart of the target container gives it a new network namespace, and the old
veth pair goes with the old one: call wire() again afterwards.
"""

import json
import random
import subprocess
import uuid

IMAGE = "mlops/neighbour"

# Runs in the neighbour: one hand-made SYN, the answer's TCP flags or "none".
PROBE = """
import random, sys
from scapy.all import IP, TCP, Ether, conf, get_if_hwaddr, srp1
conf.verb = 0
iface, src, mac, dst, port = sys.argv[1:6]
frame = Ether(src=get_if_hwaddr(iface), dst=mac) / IP(src=src, dst=dst) / TCP(
    sport=random.randint(20000, 60000), dport=int(port), flags="S", seq=random.getrandbits(32))
answer = srp1(frame, iface=iface, timeout=2, retry=1)
print(f"{answer[TCP].flags} from {answer[IP].src}" if answer is not None and TCP in answer else "none")
"""


def container_address(target, container="mlflow-server"):
    """The address of a container of the target's own engine, as a LAN neighbour would aim at it."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return _run("docker", "exec", target, "docker", "inspect", "-f", template, container).stdout.strip()


def _run(*command, check=True):
    return subprocess.run(command, capture_output=True, text=True, check=check)


def _pid(container):
    pid = _run("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout.strip()
    if pid in ("", "0"):
        raise RuntimeError(f"container {container} is not running")
    return pid


def _in_netns(pid, *command, check=True):
    return _run("nsenter", "-t", pid, "-n", *command, check=check)


class Neighbour:
    """A neighbour container on a veth pair with `target`; syn() sends from it."""

    def __init__(self, target):
        self.target = target
        tag = uuid.uuid4().hex[:8]
        self.name = f"neighbour-{tag}"
        # Interface names are at most 15 characters.
        self.target_if, self.own_if = f"nbt{tag}", f"nbn{tag}"
        net = f"10.254.{random.randint(0, 255)}"
        self.target_ip, self.own_ip = f"{net}.1", f"{net}.2"
        self.target_mac = self.own_mac = None

    def __enter__(self):
        self.start()
        try:
            self.wire()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc):
        self.close()

    def start(self):
        if _run("docker", "image", "inspect", IMAGE, check=False).returncode != 0:
            raise RuntimeError(f"image {IMAGE} is missing: run scripts/images.sh")
        _run(
            "docker", "run", "-d", "--rm", "--name", self.name, "--network", "none",
            "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN",
            "--label", f"mlops.mlflow.neighbour-of={self.target}",
            IMAGE, "sleep", "infinity",
        )  # fmt: skip

    def wire(self):
        """(Re)create the veth pair between the target's current namespace and the neighbour's."""
        self.unwire()
        target_pid, own_pid = _pid(self.target), _pid(self.name)
        _run("ip", "link", "add", self.target_if, "type", "veth", "peer", "name", self.own_if)
        try:
            _run("ip", "link", "set", self.target_if, "netns", target_pid)
            _run("ip", "link", "set", self.own_if, "netns", own_pid)
        except subprocess.CalledProcessError:
            _run("ip", "link", "del", self.target_if, check=False)
            raise
        for pid, interface, address in (
            (target_pid, self.target_if, self.target_ip),
            (own_pid, self.own_if, self.own_ip),
        ):
            _in_netns(pid, "ip", "addr", "add", f"{address}/24", "dev", interface)
            _in_netns(pid, "ip", "link", "set", interface, "up")
        self.target_mac = self._mac(target_pid, self.target_if)
        self.own_mac = self._mac(own_pid, self.own_if)
        _in_netns(target_pid, "ip", "neigh", "replace", self.own_ip, "lladdr", self.own_mac,
                  "dev", self.target_if, "nud", "permanent")  # fmt: skip

    @staticmethod
    def _mac(pid, interface):
        return json.loads(_in_netns(pid, "ip", "-j", "link", "show", "dev", interface).stdout)[0]["address"]

    def answer(self, dst_ip, port):
        """What comes back for a SYN to dst_ip:port: e.g. "SA from 127.0.0.1", "RA from ...", or "none"."""
        result = _run(
            "docker", "exec", self.name, "python3", "-c", PROBE,
            self.own_if, self.own_ip, self.target_mac, dst_ip, str(port),
        )  # fmt: skip
        answer = result.stdout.strip()
        print(f"neighbour {self.own_ip} -> {self.target}: SYN to {dst_ip}:{port}: {answer}")
        return answer

    def syn(self, dst_ip, port):
        """Whether the target answers a SYN to dst_ip:port, sent from the neighbour, with a SYN-ACK."""
        answer = self.answer(dst_ip, port)
        return answer != "none" and set(answer.split()[0]) >= {"S", "A"}

    def unwire(self):
        """Delete the veth pair (deleting one end deletes the other), wherever it is."""
        try:
            _in_netns(_pid(self.target), "ip", "link", "del", self.target_if, check=False)
        except (RuntimeError, subprocess.CalledProcessError):
            pass  # the target is gone or restarting; its namespace took the pair along
        _run("ip", "link", "del", self.target_if, check=False)

    def close(self):
        self.unwire()
        _run("docker", "rm", "-f", self.name, check=False)

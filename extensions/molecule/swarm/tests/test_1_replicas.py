"""The replica set as deployed: one replica per node, one database and one bucket behind both,
one secret key and one user database, the schema migrated once, and each node's port off the network."""

import json
import os
import re
import subprocess
import time
import uuid

import requests
from conftest import ADMIN, MANAGER, NODES, WORKER, on, psql, replica, site


def lan_address(node):
    """The node's IPv4 address on the network the nodes share."""
    return subprocess.run(
        ["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "mlflow-swarm-lan").IPAddress}}', node],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_one_replica_runs_on_each_node_and_answers_on_its_loopback(relays):
    tasks = on(
        MANAGER,
        "docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' mlflow_mlflow-server",
    )
    nodes = sorted(line.split()[0] for line in tasks.splitlines())
    assert nodes == sorted(NODES), tasks
    assert all(" Running " in f" {line} " for line in tasks.splitlines()), tasks
    for node, relay in relays.items():
        answer = requests.get(f"{relay.uri}/health", timeout=30)
        assert answer.status_code == 200 and answer.text.strip() == "OK", node


def test_a_run_logged_through_one_node_is_read_through_the_other_with_its_artifact(clients, tmp_path):
    writer, reader = clients[WORKER], clients[MANAGER]
    experiment = writer.create_experiment(f"across-nodes-{uuid.uuid4().hex[:8]}")
    run_id = writer.create_run(experiment).info.run_id
    writer.log_param(run_id, "via", WORKER)
    data = os.urandom(50_000)
    (tmp_path / "weights.bin").write_bytes(data)
    writer.log_artifact(run_id, str(tmp_path / "weights.bin"))
    assert reader.get_run(run_id).data.params == {"via": WORKER}
    fetched = reader.download_artifacts(run_id, "weights.bin", str(tmp_path / "out"))
    assert open(fetched, "rb").read() == data


def test_every_replica_has_the_same_secret_key_and_the_same_users(relays):
    digests = {
        node: on(node, f"docker exec {replica(node)} sha256sum /run/secrets/flask_secret_key").split()[0]
        for node in NODES
    }
    assert len(set(digests.values())) == 1, digests
    assert on(MANAGER, "sha256sum /opt/mlflow/secrets/flask_secret_key").split()[0] == digests[MANAGER]
    # A user made through the manager's replica logs in through the worker's: the users live in PostgreSQL.
    created = requests.post(
        f"{relays[MANAGER].uri}/api/2.0/mlflow/users/create",
        json={"username": "carol", "password": "carol-Password-123"},
        auth=ADMIN,
        timeout=30,
    )
    assert created.status_code == 200, created.text
    answer = requests.get(
        f"{relays[WORKER].uri}/api/2.0/mlflow/experiments/search?max_results=1",
        auth=("carol", "carol-Password-123"),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert (
        requests.get(f"{relays[WORKER].uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30).status_code
        == 401
    )
    assert psql("SELECT username FROM users ORDER BY username") == [["admin"], ["carol"]]


def test_the_schema_was_migrated_once_before_the_replicas_started():
    logs = on(MANAGER, "docker service logs --raw mlflow_mlflow-server 2>&1")
    assert "Running upgrade" not in logs
    assert len(psql("SELECT version_num FROM alembic_version")) == 1
    assert len(psql("SELECT version_num FROM alembic_version_auth")) == 1


def test_the_replicas_ports_stay_off_the_network():
    """Swarm publishes a host-mode port on every address; the guard drops what arrives from the network."""
    # Its address on the network the nodes share (docker_gwbridge has the same subnet on every node).
    manager_ip = lan_address(MANAGER)
    assert manager_ip
    probe = f"import socket; s = socket.socket(); s.settimeout(3); print(s.connect_ex(('{manager_ip}', 500)))"
    assert on(WORKER, f'python3 -c "{probe}"').strip() != "0"
    # Its own loopback reaches it.
    assert (
        on(
            MANAGER, "python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', 500), 5) and 0)\""
        ).strip()
        == "0"
    )
    rules = on(MANAGER, "iptables -t raw -S PREROUTING")
    assert "-A PREROUTING ! -i lo -p tcp -m tcp --dport 500 -j DROP" in rules


def test_the_join_tokens_never_show_in_the_output_even_with_vvv():
    """A join token lets any host join the Swarm as a node and run the replicas' secrets."""
    tokens = {role: on(MANAGER, f"docker swarm join-token -q {role}").strip() for role in ("worker", "manager")}
    assert all(token.startswith("SWMTKN-") for token in tokens.values())
    run, out = site("-vvv")
    assert run.returncode == 0, run.stdout[-3000:]
    # The search would find them: -vvv shows module arguments and results, the Swarm's among them.
    assert '"module_args": {' in out and "Join the Docker Swarm of" in out
    assert [role for role, token in tokens.items() if token in out] == []


def lan_interface(node):
    """The node's interface on the network the nodes share."""
    address = lan_address(node)
    [line] = [line for line in on(node, "ip -o -4 addr show").splitlines() if f" {address}/" in line]
    return line.split()[1]


def with_ipv6(node):
    """IPv6 on, as on a real lab server (a target container starts with it off): in the node's
    network namespace, from outside; returns the interface's link-local address once usable."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", node], capture_output=True, text=True, check=True
    ).stdout.strip()
    switch_on = "for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 0 > $f; done"
    subprocess.run(["nsenter", "-t", pid, "-n", "sh", "-c", switch_on], check=True)
    interface = lan_interface(node)
    for _attempt in range(30):
        shown = on(node, f"ip -6 -o addr show dev {interface} scope link")
        if "fe80::" in shown and "tentative" not in shown:
            return interface, shown.split()[3].split("/")[0]
        time.sleep(1)
    raise AssertionError(f"{node}: no usable link-local address on {interface}")


def healthy_on_loopback(node):
    probe = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:500/health', timeout=5).status)"
    for _attempt in range(90):
        if on(node, f'python3 -c "{probe}" 2>/dev/null', check=False).strip() == "200":
            return
        time.sleep(2)
    raise AssertionError(f"{node}: MLflow did not answer on 127.0.0.1:500")


def test_the_replicas_port_stays_off_the_network_on_ipv6_too():
    """Docker publishes the replicas' port on [::] too. The guard drops it there as well; the
    control takes the IPv6 rule away and the worker reaches the manager's MLflow over IPv6."""
    manager_address = with_ipv6(MANAGER)[1]
    worker_interface = with_ipv6(WORKER)[0]
    # dockerd publishes on [::] only when it starts with IPv6 on, as on a lab server that boots with it.
    for node in NODES:
        on(node, "systemctl restart docker")
    for node in NODES:
        healthy_on_loopback(node)
    assert "[::]:500" in on(MANAGER, "ss -ltnH"), "positive control: Docker publishes the port on IPv6"
    probe = (
        "import socket; s = socket.socket(socket.AF_INET6); s.settimeout(3); "
        f"print(s.connect_ex(('{manager_address}', 500, 0, socket.if_nametoindex('{worker_interface}'))))"
    )
    rule = "PREROUTING -p tcp --dport 500 ! -i lo -j DROP"
    assert "-A PREROUTING ! -i lo -p tcp -m tcp --dport 500 -j DROP" in on(MANAGER, "ip6tables -t raw -S PREROUTING")
    assert on(WORKER, f'python3 -c "{probe}"').strip() != "0"
    on(MANAGER, f"ip6tables -t raw -D {rule}")
    try:
        assert on(WORKER, f'python3 -c "{probe}"').strip() == "0"
    finally:
        on(MANAGER, "systemctl restart mlflow-loopback-guard.service")
    assert on(WORKER, f'python3 -c "{probe}"').strip() != "0"


def test_an_encrypted_overlay_is_refused_before_any_change_where_the_kernel_has_no_ipsec():
    """The role's default encrypts the overlay between the nodes. This machine's kernel has no
    IPsec ESP (the reason the scenario turns encryption off), so the default must stop the role on
    both nodes before it changes anything, saying what to do."""
    # What a change would touch, part by part: the files the role writes, the networks, and each
    # service's spec (its version index moves with any update; a replica that restarts on its own,
    # which the running count showed, does not move it).
    fingerprint = {
        "files": "sha256sum /opt/mlflow/docker-compose.yml /opt/mlflow/docker-stack.yml",
        "networks": "docker network ls --format '{{.Name}}' | sort",
        "services": "docker service inspect -f '{{.Spec.Name}} {{.Version.Index}} {{.Spec.Mode.Replicated.Replicas}}'"
        " $(docker service ls -q) | sort",
    }
    before = {part: on(MANAGER, command) for part, command in fingerprint.items()}
    assert before["services"].strip(), "the probe sees no service"
    run, out = site("-e", "mlflow_server_swarm_encrypted=true")
    assert run.returncode != 0, out[-3000:]
    for node in NODES:
        assert f"the kernel of {node} cannot run IPsec ESP with AES-GCM" in out, out[-3000:]
        assert re.search(rf"{node}\s*: ok=\d+\s+changed=0\s", out), out[-1500:]
    assert {part: on(MANAGER, command) for part, command in fingerprint.items()} == before
    # As configured here: the network in the clear, and no encrypted one left behind.
    networks = on(MANAGER, "docker network ls --format '{{.Name}}'").split()
    assert "mlflow-swarm" in networks and "mlflow-swarm-private" not in networks
    options = json.loads(on(MANAGER, "docker network inspect -f '{{json .Options}}' mlflow-swarm"))
    assert "encrypted" not in options

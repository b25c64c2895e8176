"""The replica set as deployed: one replica per node, one database and one bucket behind both,
one secret key and one user database, the schema migrated once, and each node's port off the network."""

import os
import subprocess
import uuid

import requests
from conftest import ADMIN, MANAGER, NODES, PROJECT, WORKER, on, psql, replica


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
    manager_ip = subprocess.run(
        ["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "mlflow-swarm-lan").IPAddress}}', MANAGER],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
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
    run = subprocess.run(
        ["ansible-playbook", "-vvv", "playbooks/site.yml", "-i", os.environ["MOLECULE_INVENTORY_FILE"]],
        cwd=PROJECT,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "LANG": "C.UTF-8", "ANSIBLE_NOCOLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, run.stdout[-3000:]
    # The search would find them: -vvv shows module arguments and results, the Swarm's among them.
    assert '"module_args": {' in out and "Join the Docker Swarm of" in out
    assert [role for role, token in tokens.items() if token in out] == []

"""The server role's promises, read from the real target after converge."""

import json
import os
import subprocess
import time
import uuid

import pytest
import yaml
from mlflow_client import assert_run_intact, log_run
from neighbour import Neighbour
from neighbour import container_address as neighbour_aims_at

STORE = "/opt/mlflow"
GUARD = "mlflow-loopback-guard.service"
RULE = "PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP"
# The secret files MLflow reads without authentication (MLflow 3's keys).
SECRET_FILES = ["kek_passphrase", "kek_version", "webhook_key"]


def wait_healthy(host, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.run("docker inspect -f '{{.State.Health.Status}}' mlflow-server").stdout.strip() == "healthy":
            return True
        time.sleep(2)
    return False


def container_address(host):
    return neighbour_aims_at(host.backend.get_hostname())


def test_store_is_private_and_keeps_the_seeds_modes_inside(host):
    store = host.file(STORE)
    assert store.mode == 0o700 and store.user == "root"
    assert host.file(f"{STORE}/docker-compose.yml").mode == 0o600
    assert host.file(f"{STORE}/.mlops-mlflow-store").exists
    assert host.file(f"{STORE}/db/mlflow.db").is_file
    assert host.file(f"{STORE}/db/mlflow.db").mode == 0o666
    assert host.file(f"{STORE}/mlruns").is_directory
    assert host.file(f"{STORE}/mlruns").mode == 0o777


def test_compose_file_keeps_its_promises(host):
    service = yaml.safe_load(host.file(f"{STORE}/docker-compose.yml").content_string)["services"]["mlflow-server"]
    command = service["command"]
    assert service["container_name"] == "mlflow-server"
    assert service["restart"] == "unless-stopped"
    assert service["ports"] == ["127.0.0.1:500:5000"]
    # The databases' folder, not the db file alone: SQLite's journal lives beside it. Then
    # mlruns/, and read-only each secret file MLflow reads: MLflow 3's keys, even without
    # authentication. Compose never creates a missing one (it would make a folder).
    bind = {"type": "bind", "bind": {"create_host_path": False}}
    assert service["volumes"] == [
        {**bind, "source": f"{STORE}/db", "target": "/mlflow/db"},
        {**bind, "source": f"{STORE}/mlruns", "target": "/mlflow/mlruns"},
    ] + [
        {**bind, "source": f"{STORE}/secrets/{name}", "target": f"/run/mlflow/{name}", "read_only": True}
        for name in SECRET_FILES
    ]
    exports = command[2]
    for name, path in [
        ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "kek_passphrase"),
        ("MLFLOW_CRYPTO_KEK_VERSION", "kek_version"),
        ("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", "webhook_key"),
    ]:
        assert f'export {name}="$(cat /run/mlflow/{path})"' in exports
    assert command[command.index("--backend-store-uri") + 1] == "sqlite:////mlflow/db/mlflow.db"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "/mlflow/mlruns"
    assert "--default-artifact-root" not in command
    assert "curl" not in " ".join(service["healthcheck"]["test"])


def test_the_container_sees_only_its_data_and_the_secrets_it_reads(host):
    """A path-traversal bug in MLflow reads or writes only what the container mounts: db/, mlruns/
    and, read-only, its own secret files; not the Compose file, the other secrets or the store."""
    mounts = json.loads(host.check_output("docker inspect mlflow-server"))[0]["Mounts"]
    assert sorted((m["Source"], m["Destination"], m["RW"]) for m in mounts) == sorted(
        [(f"{STORE}/db", "/mlflow/db", True), (f"{STORE}/mlruns", "/mlflow/mlruns", True)]
        + [(f"{STORE}/secrets/{name}", f"/run/mlflow/{name}", False) for name in SECRET_FILES]
    )
    inside = host.check_output("docker exec mlflow-server ls -A /mlflow /run/mlflow")
    assert inside.split() == ["/mlflow:", "db", "mlruns", "/run/mlflow:", *SECRET_FILES]
    # Positive control: a write through /mlflow/db reaches the store on the host.
    probe = f"probe-{uuid.uuid4().hex}"
    host.check_output(f"docker exec mlflow-server sh -c 'echo {probe} > /mlflow/db/{probe}'")
    assert host.file(f"{STORE}/db/{probe}").content_string == f"{probe}\n"
    host.check_output(f"rm {STORE}/db/{probe}")
    # What the old mount let MLflow rewrite: the Compose file (a docker-compose.override.yml beside
    # it would have run anything as root) and the secrets, now out of reach or read-only.
    compose = host.check_output(f"sha256sum {STORE}/docker-compose.yml")
    for name in ("docker-compose.yml", "docker-compose.override.yml"):
        host.check_output(f"docker exec mlflow-server sh -c 'echo x > /mlflow/{name}'")
    assert host.check_output(f"sha256sum {STORE}/docker-compose.yml") == compose
    assert not host.file(f"{STORE}/docker-compose.override.yml").exists
    host.check_output("docker exec mlflow-server rm -f /mlflow/docker-compose.yml /mlflow/docker-compose.override.yml")
    refused = host.run("docker exec mlflow-server sh -c 'echo x > /run/mlflow/kek_version'")
    assert refused.rc != 0 and "Read-only file system" in refused.stderr


def test_container_runs_healthy_with_restart_policy(host):
    assert wait_healthy(host)
    state = json.loads(host.check_output("docker inspect mlflow-server"))[0]
    assert state["State"]["Running"] is True
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # Docker rotates the log (its default never does): 5 files of 20 MB at most.
    assert state["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "20m"}}


def test_port_listens_on_loopback_only_where_only_root_may_listen(host):
    listeners = [line.split()[3] for line in host.check_output("ss -ltnH").splitlines()]
    assert [address for address in listeners if address.endswith(":500")] == ["127.0.0.1:500"]
    assert int(host.file("/proc/sys/net/ipv4/ip_unprivileged_port_start").content_string) > 500


def test_job_runner_is_off_by_default_and_runs_when_switched_on(host):
    """debian13 turns the job runner on; debian12 (like every other scenario) has the role's default, off."""
    on = host.backend.get_hostname() == "debian13"
    commands = host.check_output(
        'docker exec mlflow-server sh -c \'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "\''
    )
    # Positive control: the server itself shows up in the same listing.
    assert "mlflow.server.fastapi_app" in commands
    assert ("mlflow.server.jobs._job_runner" in commands) is on
    env = json.loads(host.check_output("docker inspect -f '{{json .Config.Env}}' mlflow-server"))
    assert ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in env) is not on


# The uvicorn process's --workers and the worker processes it started (its children that
# multiprocessing spawned), read inside the container.
WORKERS_PROBE = r"""
import json, os
procs = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode() for a in f.read().split(b"\0") if a]
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    procs[int(pid)] = (ppid, args)
servers = [pid for pid, (_, args) in procs.items() if "uvicorn" in args and "--workers" in args]
print(json.dumps([
    {"workers": int(procs[pid][1][procs[pid][1].index("--workers") + 1]),
     "children": sum(ppid == pid and any("spawn_main" in a for a in args) for ppid, args in procs.values())}
    for pid in servers]))
"""


def test_workers_follow_the_default_and_the_setting(host):
    """debian13 keeps the role's default (auto: min(8, max(4, 2 x CPUs)), never fewer than
    MLflow's own 4); debian12, like the other scenarios, runs the 2 that config.yml sets."""
    cpus = int(host.check_output("nproc"))
    expected = min(8, max(4, 2 * cpus)) if host.backend.get_hostname() == "debian13" else 2
    servers = json.loads(host.check_output("docker exec mlflow-server python3 -c %s", WORKERS_PROBE))
    assert servers == [{"workers": expected, "children": expected}]


def test_health_endpoint_answers_ok(host):
    body = host.check_output(
        "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:500/health').read().decode())\""
    )
    assert body.strip() == "OK"


def test_artifacts_land_on_server_store(host, mlflow, tmp_path):
    run = log_run(mlflow, tmp_path, f"verify-{uuid.uuid4().hex[:8]}")
    assert_run_intact(mlflow, run, tmp_path, in_order=True)
    found = host.check_output(f"find {STORE}/mlruns -path '*{run['run_id']}*' -name {run['artifact']}")
    assert found, "the artifact is not under mlruns/ on the server"
    assert host.file(found.splitlines()[0]).content == run["bytes"]


def test_runs_survive_compose_down_up_and_container_removal(host, mlflow, tmp_path):
    run = log_run(mlflow, tmp_path, "survival")
    host.check_output(f"cd {STORE} && docker compose down && docker compose up -d")
    assert wait_healthy(host)
    assert_run_intact(mlflow, run, tmp_path / "after-down-up", in_order=True)
    host.check_output(f"docker rm -f mlflow-server && cd {STORE} && docker compose up -d")
    assert wait_healthy(host)
    assert_run_intact(mlflow, run, tmp_path / "after-rm", in_order=True)


HEALTH_WAIT = "Wait until MLflow answers healthy through its API"
ASK_HEALTH = "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:500/health')\""


def test_a_re_run_leaves_a_healthy_mlflow_alone_and_starts_a_stopped_one(host, mlflow, tmp_path):
    """The host read decides: a converge that finds MLflow running healthy on its image, with nothing
    else to change, neither touches nor asks it; one that finds it stopped starts it and waits."""
    role_logic_on_one_platform(host)
    run = log_run(mlflow, tmp_path, "stopped-by-hand")
    assert wait_healthy(host)
    started = host.check_output("docker inspect -f '{{.Id}} {{.State.StartedAt}}' mlflow-server")
    result, report, failed = converge(host)
    assert result.returncode == 0 and not failed, failed
    assert report["stats"][host.backend.get_hostname()]["changed"] == 0
    assert HEALTH_WAIT not in tasks_run(report, host)
    assert host.check_output("docker inspect -f '{{.Id}} {{.State.StartedAt}}' mlflow-server") == started

    host.check_output("docker stop mlflow-server")
    # The control: stopped, MLflow answers nothing.
    assert host.run(ASK_HEALTH).rc != 0
    result, report, failed = converge(host)
    assert result.returncode == 0 and not failed, failed
    assert HEALTH_WAIT in tasks_run(report, host)
    assert json.loads(host.check_output("docker inspect -f '{{json .State.Running}}' mlflow-server")) is True
    assert host.run(ASK_HEALTH).rc == 0
    assert_run_intact(mlflow, run, tmp_path / "after-restart")


def role_logic_on_one_platform(host):
    """Re-converging costs half a minute per run; tasks that do not depend on the engine run on debian13 only."""
    if host.backend.get_hostname() != "debian13":
        pytest.skip("role logic, the same on every platform: run on debian13")


def converge(host, *extra_vars):
    """converge.yml on this host alone with the JSON callback: the result, the report, the failed outcomes."""
    name = host.backend.get_hostname()
    playbook = os.path.join(os.environ["MOLECULE_SCENARIO_DIRECTORY"], "converge.yml")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], playbook, "--limit", name]
    for extra in extra_vars:
        command += ["-e", extra]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
        },
    )
    assert result.stdout.startswith("{"), result.stdout[:300] + result.stderr[-600:]
    report = json.loads(result.stdout)
    failed = [
        outcome
        for play in report["plays"]
        for task in play["tasks"]
        for outcome in task["hosts"].get(name, {}).get("results", [task["hosts"].get(name, {})])
        if outcome.get("failed")
    ]
    return result, report, failed


def _fingerprint(host):
    return host.check_output(
        f"sha256sum {STORE}/docker-compose.yml {STORE}/db/mlflow.db; docker inspect -f '{{{{.Id}}}}' mlflow-server"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("70000", "mlflow_server_port must be a plain number between 1 and 65535"),
        ("not-a-port", "mlflow_server_port"),
        # Any account may listen on 5000: it could answer in MLflow's place while MLflow is down.
        ("5000", "mlflow_server_port 5000 is one that any account on"),
    ],
)
def test_invalid_port_is_refused_before_any_change(host, value, message):
    before = _fingerprint(host)
    result, report, failed = converge(host, f"mlflow_server_port={value}")
    assert result.returncode != 0
    assert len(failed) == 1 and message in failed[0]["msg"], failed
    assert report["stats"][host.backend.get_hostname()]["changed"] == 0
    assert _fingerprint(host) == before


def test_a_host_that_lets_every_account_listen_anywhere_is_refused(host):
    role_logic_on_one_platform(host)
    before = _fingerprint(host)
    host.check_output("sysctl -q -w net.ipv4.ip_unprivileged_port_start=0")
    try:
        result, report, failed = converge(host)
    finally:
        host.check_output("sysctl -q -w net.ipv4.ip_unprivileged_port_start=1024")
    assert result.returncode != 0
    assert len(failed) == 1, failed
    assert "net.ipv4.ip_unprivileged_port_start is 0" in failed[0]["msg"]
    assert "Set net.ipv4.ip_unprivileged_port_start back to 1024" in failed[0]["msg"]
    assert report["stats"][host.backend.get_hostname()]["changed"] == 0
    assert _fingerprint(host) == before


def test_lan_neighbour_gets_no_answer_from_mlflow_on_loopback_or_the_container_address(host):
    # Docker 20.10 (Debian 12) and 26.1 (Debian 13) answer a SYN that a host on the same
    # segment sends to 127.0.0.1:500 (moby/moby#45610), and route one sent to the container's
    # own address into the bridge (moby/moby#49325); the role's guard drops both.
    container = container_address(host)
    with Neighbour(host.backend.get_hostname()) as neighbour:
        # Any answer from the target's LAN address (SYN-ACK or RST) shows the probe is wired.
        assert neighbour.answer(neighbour.target_ip, 22) != "none"
        assert not neighbour.syn("127.0.0.1", 500)
        assert not neighbour.syn(container, 5000)
        host.check_output(f"systemctl stop {GUARD}")
        try:
            assert neighbour.syn("127.0.0.1", 500), "without the guard this engine answers: the probe works"
            assert neighbour.syn(container, 5000), "without the guard this engine routes to the container"
        finally:
            host.check_output(f"systemctl start {GUARD}")
        assert not neighbour.syn("127.0.0.1", 500)
        assert not neighbour.syn(container, 5000)


def test_compose_network_is_pinned_and_has_no_ipv6(host):
    network = json.loads(host.check_output("docker network inspect mlflow_default"))[0]
    assert [entry["Subnet"] for entry in network["IPAM"]["Config"]] == ["172.31.253.0/24"]
    assert network["Options"]["com.docker.network.bridge.name"] == "mlflow0"
    assert network["EnableIPv6"] is False
    assert container_address(host).startswith("172.31.253.")
    # At most ::1 on the container's lo (Debian 12's engine leaves IPv6 off in the container
    # altogether): no IPv6 address on its network for the LAN to route to.
    addresses = host.check_output("docker exec mlflow-server cat /proc/net/if_inet6").splitlines()
    assert {line.split()[-1] for line in addresses} <= {"lo"}
    assert "eth0" in host.check_output("docker exec mlflow-server cat /proc/net/dev")


# An iptables that lets -C and -S through but refuses to insert a rule, first on PATH.
REFUSING_IPTABLES = """#!/bin/sh
case " $* " in *" -I "*) echo "iptables: simulated refusal to insert" >&2; exit 4;; esac
exec /usr/sbin/iptables "$@"
"""


@pytest.mark.parametrize(
    ("break_it", "undo", "reason"),
    [
        pytest.param(
            "mv /usr/sbin/iptables /usr/sbin/iptables.hidden",
            "mv /usr/sbin/iptables.hidden /usr/sbin/iptables",
            "iptables could not be run (not installed, or not on PATH)",
            id="no-iptables",
        ),
        pytest.param(
            f"systemctl stop {GUARD} && printf '%s' '{REFUSING_IPTABLES}' >/usr/local/sbin/iptables"
            " && chmod 755 /usr/local/sbin/iptables",
            f"rm -f /usr/local/sbin/iptables && systemctl start {GUARD}",
            f"Unable to start service {GUARD}",
            id="insertion-refused",
        ),
    ],
)
def test_guard_that_cannot_be_installed_stops_the_role_before_mlflow_changes(host, break_it, undo, reason):
    role_logic_on_one_platform(host)
    before = _fingerprint(host)
    host.check_output(break_it)
    try:
        result, report, failed = converge(host)
    finally:
        host.check_output(undo)
    assert result.returncode != 0
    message = failed[-1]["msg"]
    assert message.startswith("The loopback guard could not be installed: "), failed
    assert reason in message
    for advice in ("Install iptables", "Docker Engine 28", "mlflow_server_loopback_guard: false"):
        assert advice in message
    assert report["stats"][host.backend.get_hostname()]["changed"] == 0
    assert _fingerprint(host) == before
    assert host.run(f"iptables -t raw -C {RULE}").rc == 0


def test_opting_out_reopens_the_hole_and_opting_in_closes_it(host):
    role_logic_on_one_platform(host)
    name = host.backend.get_hostname()
    with Neighbour(name) as neighbour:
        result, report, _failed = converge(host, "mlflow_server_loopback_guard=false")
        assert result.returncode == 0, result.stderr[-600:]
        assert not host.file(f"/etc/systemd/system/{GUARD}").exists
        assert not host.file("/etc/systemd/system/mlflow-loopback-guard-check.timer").exists
        assert neighbour.syn("127.0.0.1", 500), "with the guard off this engine answers the LAN"
        assert neighbour.syn(container_address(host), 5000)
        result, report, _failed = converge(host)
        assert result.returncode == 0, result.stderr[-600:]
        assert report["stats"][name]["changed"] > 0
        assert host.service(GUARD).is_enabled
        assert not neighbour.syn("127.0.0.1", 500)
        assert not neighbour.syn(container_address(host), 5000)


@pytest.mark.parametrize(
    ("extra", "image"),
    [
        ({"mlflow_server_image": "mlops/mlflow:9.9.9", "mlflow_server_image_archive": ""}, "mlops/mlflow:9.9.9"),
        (
            {"mlflow_server_backend": "postgresql", "mlflow_server_postgres_image": "mlops/postgres:99"},
            "mlops/postgres:99",
        ),
    ],
    ids=["mlflow", "postgres"],
)
def test_an_image_only_built_here_is_never_pulled_from_a_registry(host, extra, image):
    """Anyone could publish an image under a name scripts/images.sh builds locally."""
    role_logic_on_one_platform(host)
    before = _fingerprint(host)
    result, report, failed = converge(host, json.dumps(extra))
    assert result.returncode != 0
    assert len(failed) == 1 and f"{image} is missing on this host" in failed[0]["msg"], failed
    assert "scripts/images.sh" in failed[0]["msg"]
    assert not [task for task in tasks_run(report, host) if task.startswith("Pull the")]
    assert report["stats"][host.backend.get_hostname()]["changed"] == 0
    assert _fingerprint(host) == before


def test_positive_control_a_missing_image_from_a_registry_is_pulled(host):
    """The same missing image under a registry's name: the role does try to pull it (and fails here)."""
    role_logic_on_one_platform(host)
    result, report, failed = converge(
        host, json.dumps({"mlflow_server_image": "registry.invalid/mlflow:9.9.9", "mlflow_server_image_archive": ""})
    )
    assert result.returncode != 0
    assert "Pull the MLflow image" in tasks_run(report, host)
    assert "registry.invalid" in json.dumps(failed)


def tasks_run(report, host):
    """The names of the tasks that ran (were not skipped) on this host."""
    name = host.backend.get_hostname()
    return [
        task["task"]["name"].split(" : ")[-1]
        for play in report["plays"]
        for task in play["tasks"]
        if name in task["hosts"] and not task["hosts"][name].get("skipped")
    ]

"""A lab deployed and onboarded by the release before 0.5.0 (prepare.yml) converges to this one:
the data is kept, the databases move into db/ after a backup, MLflow moves to 127.0.0.1:500 on
the pinned network, and a member's tunnel works again once onboarding ran, while their old Host
block fails closed."""

import json
import subprocess

from conftest import ALIAS, CLIENT, CONFIG, SERVER_USER, STORE, ports

testinfra_hosts = ["tunnel-server"]

PREVIOUS = json.loads((CLIENT / "previous_run.json").read_text())


def test_the_previous_release_forwarded_to_localhost_5000():
    # What members had before: the far end is the name, on an unprivileged port.
    assert "localhost:5000" in PREVIOUS["block"]


def test_the_run_logged_before_the_upgrade_is_served_with_its_artifact(tunnel, tmp_path):
    import mlflow

    tunnel(ALIAS)
    client = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{ports()[0]}")
    run = client.get_run(PREVIOUS["run_id"])
    assert run.data.params == {"release": "0668145"}
    path = client.download_artifacts(PREVIOUS["run_id"], "before.txt", str(tmp_path))
    assert open(path).read() == "logged through the previous release's tunnel\n"


COUNT_RUN = (
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
    'print(db.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (sys.argv[2],)).fetchone()[0])'
)


def test_the_previous_release_store_moved_into_db_after_a_backup(host):
    """The previous release kept mlflow.db at the store's top and mounted the whole store."""
    assert host.file(f"{STORE}/db/mlflow.db").is_file and host.file(f"{STORE}/db/mlflow.db").mode == 0o666
    assert host.file(f"{STORE}/db").mode == 0o777 and host.file(f"{STORE}/db").user == "root"
    assert not host.file(f"{STORE}/mlflow.db").exists
    # The backup taken before the move holds the run logged through the previous release.
    [backup] = host.check_output("ls -1d /var/backups/mlflow/*-pre-layout").split()
    manifest = json.loads(host.file(f"{backup}/manifest.json").content_string)
    assert manifest["label"] == "pre-layout" and manifest["counts"]["runs"] >= 1
    for database in (f"{backup}/mlflow.db", f"{STORE}/db/mlflow.db"):
        assert host.check_output(f"python3 -c '{COUNT_RUN}' {database} {PREVIOUS['run_id']}") == "1"
    sources = [mount["Source"] for mount in json.loads(host.check_output("docker inspect mlflow-server"))[0]["Mounts"]]
    assert STORE not in sources and f"{STORE}/db" in sources


def test_the_members_block_was_rewritten_to_the_new_far_end():
    block = CONFIG.read_text()
    assert f"LocalForward 127.0.0.1:{ports()[0]} 127.0.0.1:500" in block
    assert "localhost:5000" not in block


def test_the_old_block_fails_closed_instead_of_reaching_whoever_holds_port_5000(host, tmp_path):
    """The old Host block (far end localhost:5000), kept by a member who did not re-run onboarding."""
    old = tmp_path / "old_config"
    old.write_text(PREVIOUS["block"])
    # The old block's own forward target, asked for directly (-W) so no local port is needed.
    result = subprocess.run(
        ["ssh", "-F", str(old), "-o", "BatchMode=yes", "-o", "ControlPath=none", "-o", "ClearAllForwardings=yes",
         "-o", "ConnectTimeout=20", "-W", "localhost:5000", "mlflowtunnel"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "administratively prohibited" in result.stderr
    keys = host.file(f"/home/{SERVER_USER}/.ssh/authorized_keys").content_string
    assert 'permitopen="127.0.0.1:500"' in keys and "5000" not in keys


def test_mlflow_moved_to_the_pinned_network_and_the_guard_covers_it(host):
    network = json.loads(host.check_output("docker network inspect mlflow_default"))[0]
    assert [entry["Subnet"] for entry in network["IPAM"]["Config"]] == ["172.31.253.0/24"]
    rules = host.check_output("iptables -t raw -S PREROUTING")
    assert "-A PREROUTING -d 172.31.253.0/24 ! -i mlflow0 -m addrtype ! --dst-type LOCAL -j DROP" in rules
    assert "-A PREROUTING -d 127.0.0.0/8 ! -i lo -j DROP" in rules

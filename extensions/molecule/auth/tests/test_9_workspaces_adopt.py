"""The adoption of experiments made before the lab groups (playbooks/adopt.yml), after the groups of
test_9_workspaces: vision-history (ann's) moves into vision and nlp-history (ben's) into nlp, MLflow
stopped, after a pre-adopt backup. Every artifact of every moved run then downloads through the
server, as a member of the group, with the sha256 that the backup's manifest recorded."""

import json

from conftest import ADMIN, BACKUPS, SECOND_ADMIN_PASSWORD, STORE, UPGRADED, Tunnel, api, mlflow_as, run_playbook

testinfra_hosts = ["mlflow-auth"]

# As test_9_workspaces left the server.
GROUPS_ON = {
    **UPGRADED,
    "mlflow_server_workspaces": True,
    "mlflow_server_default_workspace_access": False,
}
ADOPT = {**GROUPS_ON, "mlflow_server_adopt": {"vision": ["vision-history"], "nlp": ["nlp-history"]}}


def backups(host):
    return host.check_output(f"ls -1 {BACKUPS}").split()


def in_default(host, name):
    """Whether the admin finds that experiment in the workspace default (404 once it moved)."""
    status, found = api(
        host,
        f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}",
        ADMIN,
        SECOND_ADMIN_PASSWORD,
        workspace="default",
    )
    assert status in (200, 404), found
    return status == 200


def test_the_plan_and_the_refusals_change_nothing(host):
    before = backups(host)
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server")

    planned = run_playbook(host, "adopt.yml", ADOPT, check=True)
    assert planned.rc == 0, planned.failures
    plan = planned.stdout
    assert "Check mode, nothing done. Would move nlp-history" in plan, plan[-3000:]
    assert "2 runs, 4 artifact files) to nlp" in plan and "2 runs, 4 artifact files) to vision" in plan, plan[-3000:]
    # MLflow's own dry run.
    assert "1 experiments row(s) would be moved from 'default' to 'vision'" in plan, plan[-3000:]

    refused = run_playbook(host, "adopt.yml", {**GROUPS_ON, "mlflow_server_adopt": {"vision": ["vision-histroy"]}})
    assert refused.rc != 0
    assert "no experiment vision-histroy in the workspace default" in refused.stdout, refused.failures
    unknown = run_playbook(host, "adopt.yml", {**GROUPS_ON, "mlflow_server_adopt": {"audio": ["nlp-history"]}})
    assert unknown.rc != 0
    assert "the workspace audio does not exist: make the group first" in unknown.stdout, unknown.failures

    # Nothing changed: no backup, no restart, the experiments in default.
    assert backups(host) == before
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server") == started
    assert in_default(host, "vision-history") and in_default(host, "nlp-history")
    with Tunnel("ann"):
        # The control: in her group ann does not find it yet.
        assert mlflow_as("ann", "fetch", "vision-history", profile=True)["status"] == 404


def test_adopted_runs_download_in_their_group_with_the_backups_sha256(host, ledger):
    result = run_playbook(host, "adopt.yml", ADOPT)
    assert result.rc == 0, result.failures
    assert "Moved nlp-history, vision-history into their groups" in result.stdout, result.stdout[-3000:]
    backup = host.check_output(f"ls -1d {BACKUPS}/*-pre-adopt | tail -1")
    manifest = json.loads(host.file(f"{backup}/manifest.json").content_string)["files"]
    assert not in_default(host, "vision-history") and not in_default(host, "nlp-history")

    # ann reads what she made, through her group; cat reads ben's, through hers (she made none of it).
    for who, name in (("ann", "vision-history"), ("cat", "nlp-history")):
        with Tunnel(who):
            fetched = mlflow_as(who, "fetch", name, profile=True)
        assert fetched["status"] == 200, fetched
        assert fetched["value"] == ledger[name]
        for key, digest in fetched["value"].items():
            assert manifest[f"mlruns/{key}"]["sha256"] == digest, key
    # The files moved, none was copied: each experiment's folder is under its group's.
    for name, group in (("vision-history", "vision"), ("nlp-history", "nlp")):
        experiment = next(iter(ledger[name])).split("/")[0]
        assert host.file(f"{STORE}/mlruns/workspaces/{group}/{experiment}").is_directory
        assert not host.file(f"{STORE}/mlruns/{experiment}").exists

    with Tunnel("ann"):
        # Other groups still get nothing.
        assert mlflow_as("ann", "fetch", "nlp-history", workspace="nlp")["status"] == 403

    again = run_playbook(host, "adopt.yml", ADOPT)
    assert again.rc == 0 and again.changed == 0, again.failures
    assert "Moving nothing. In their groups already: nlp-history, vision-history" in again.stdout, again.stdout[-3000:]
    assert host.check_output(f"ls -1d {BACKUPS}/*-pre-adopt | tail -1") == backup


def test_workspaces_cannot_be_turned_off_while_the_groups_hold_experiments(host):
    # The control: MLflow's own start without workspaces refuses this store.
    control = host.run(
        "docker exec -e MLFLOW_ENABLE_WORKSPACES=false mlflow-server python -c "
        '"from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Store; '
        "Store('sqlite:////mlflow/db/mlflow.db', '/mlflow/mlruns')\""
    )
    assert control.rc != 0 and "Cannot disable workspaces" in control.stderr, control.stdout + control.stderr
    started = host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server")

    refused = run_playbook(host, "site.yml", {**GROUPS_ON, "mlflow_server_workspaces": False})
    assert refused.rc != 0
    assert "but experiments or models lie in the workspaces nlp, vision of" in refused.stdout, refused.failures
    assert host.check_output("docker inspect -f '{{.State.StartedAt}}' mlflow-server") == started
    status, info = api(host, "/api/3.0/mlflow/server-info")
    assert status == 200 and info["workspaces_enabled"] is True, info

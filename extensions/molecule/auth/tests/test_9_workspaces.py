"""Lab groups (MLflow 3 workspaces), on the running 3.17.2 server with authentication: turned on
with one variable, then onboarding with two groups and three members (cat in both). Each member
works in their group through their own tunnel with the real mlflow client; groupmates read (vision)
or edit (nlp) each other's runs, other groups and strangers are refused; a member who leaves a group
is refused on everything there, their own experiments included. gc collects in every workspace.
Every answer goes into the auth matrix (.cache/logs/auth-matrix.json)."""

import os
from pathlib import Path

from conftest import (
    ADMIN,
    PC,
    PORTS,
    SECOND_ADMIN_PASSWORD,
    STORE,
    UPGRADED,
    Tunnel,
    api,
    mlflow_as,
    on_pc,
    run_playbook,
    run_rows,
)

testinfra_hosts = ["mlflow-auth"]

GROUPS_ON = {**UPGRADED, "mlflow_server_workspaces": True}
GROUPS = [
    {"name": "vision", "description": "Computer vision", "access": "READ"},
    {"name": "nlp", "description": "Language models", "access": "EDIT"},
]


# Whose mlflow client counts: cat's is the PC's MLflow 3.17.2; ben names the system's Python, which has none.
PYTHONS = {"ann": "/opt/mlflow/bin/python", "ben": "/usr/bin/python3", "cat": "/opt/mlflow/bin/python3"}


def team(cat_groups):
    keys = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "keys"
    groups = {"ann": ["vision"], "ben": ["nlp"], "cat": cat_groups}
    return [
        {
            "name": name,
            "pc": PC,
            "local_user": name,
            "public_key": (keys / f"{name}.pub").read_text().strip(),
            "host_alias": "mlflowauth",
            "local_port": PORTS[name],
            "groups": groups[name],
            "python": PYTHONS[name],
        }
        for name in ("ann", "ben", "cat")
    ]


def member_results(result):
    """Each member's line of the report, by name."""
    lines = {}
    for play in result.report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Show each member's result and next steps"):
                for item in task["hosts"]["localhost"]["results"]:
                    name, _sep, text = item["msg"].partition(": ")
                    lines[name] = text
    return lines


def onboard(host, cat_groups, **extra):
    variables = {
        "mlflow_team": team(cat_groups),
        "mlflow_team_groups": GROUPS,
        "mlflow_server_auth_admin_password": SECOND_ADMIN_PASSWORD,
        "mlflow_server_workspaces": True,
        **extra,
    }
    return run_playbook(host, "onboard.yml", variables, limit=False)


def changed_everywhere(result):
    return sum(stats["changed"] for stats in result.report["stats"].values())


def workspaces_on(host):
    status, info = api(host, "/api/3.0/mlflow/server-info")
    assert status == 200, info
    return info["workspaces_enabled"]


def test_groups_are_refused_until_the_server_has_workspaces(host):
    result = onboard(host, ["vision", "nlp"], mlflow_server_workspaces=False)
    assert result.rc != 0
    assert "groups need authentication and workspaces in MLflow on the server" in result.stdout, result.stdout[-3000:]
    # The control: nothing was made.
    assert not workspaces_on(host)
    assert not host.user("cat").exists


def test_members_have_history_from_before_the_groups(host, ledger):
    """Experiments with artifacts that ann (vision-history) and ben (nlp-history) made before the
    groups: they stay in the workspace default until the adoption moves them (test_9_workspaces_adopt).
    (With the host, as every test here: testinfra keeps the tests that take it in their order.)"""
    for who, name in (("ann", "vision-history"), ("ben", "nlp-history")):
        with Tunnel(who):
            made = mlflow_as(who, "history", name)
            assert made["status"] == 200, made
            fetched = mlflow_as(who, "fetch", name)
        # The control of the adoption's check: 2 runs, 2 files each, served as they were logged.
        assert fetched["status"] == 200 and len(fetched["value"]) == 4, fetched
        ledger[name] = fetched["value"]


def test_turning_groups_on_restarts_mlflow_with_workspaces_and_members_keep_what_they_saw(host, ledger):
    with Tunnel("ann"):
        before = mlflow_as("ann", "log", "ann-before-groups", "ann")
        assert before["status"] == 200, before
        assert "ann-before-groups" in mlflow_as("ann", "search")["value"]
    ledger["before_groups"] = before["value"]["run_id"]

    result = run_playbook(host, "site.yml", GROUPS_ON)
    assert result.rc == 0, result.failures
    assert workspaces_on(host)
    health = [
        item for name, item in result.results() if name.endswith("Wait until MLflow answers healthy through its API")
    ]
    assert health and health[-1]["workspaces_enabled"] is True, health
    ini = host.file(f"{STORE}/secrets/basic_auth.ini")
    assert "grant_default_workspace_access = true" in ini.content_string
    again = run_playbook(host, "site.yml", GROUPS_ON)
    assert again.rc == 0 and again.changed == 0, again.failures

    # What ann made before stays in the workspace `default`, where she still reads it.
    with Tunnel("ann"):
        assert mlflow_as("ann", "read", ledger["before_groups"])["status"] == 200
        assert "ann-before-groups" in mlflow_as("ann", "search")["value"]


def test_onboarding_gives_each_group_a_workspace_and_each_member_theirs(host):
    result = onboard(host, ["vision", "nlp"])
    assert result.rc == 0, result.stdout[-3000:]
    assert "nlp: ben, cat." in result.stdout and "vision: ann, cat." in result.stdout, result.stdout[-3000:]
    lines = member_results(result)
    # cat, in two groups, is shown how to switch.
    assert 'switch for one process with mlflow.set_workspace("nlp")' in lines["cat"], lines
    # Each member's client beside the server's 3.17.2: ben's Python has none, and he is told how to get one.
    assert "WARNING" not in lines["ann"] and "WARNING" not in lines["cat"], lines
    assert "WARNING: the mlflow client of /usr/bin/python3 is not installed" in lines["ben"], lines
    assert "Fix: `/usr/bin/python3 -m pip install 'mlflow>=3.17.2,<4'`" in lines["ben"], lines
    status, listed = api(host, "/api/3.0/mlflow/workspaces", ADMIN, SECOND_ADMIN_PASSWORD)
    assert status == 200
    described = {w["name"]: w.get("description") for w in listed["workspaces"]}
    assert described["vision"] == "Computer vision" and described["nlp"] == "Language models"
    for name, workspace in (("ann", "vision"), ("ben", "nlp"), ("cat", "vision")):
        assert f"export MLFLOW_WORKSPACE={workspace}" in on_pc(name, "cat .profile").stdout

    again = onboard(host, ["vision", "nlp"])
    assert again.rc == 0 and changed_everywhere(again) == 0, again.stdout[-3000:]


def test_groupmates_share_their_group_and_nobody_else_gets_in(host, ledger):
    with Tunnel("ann"), Tunnel("ben"), Tunnel("cat"):
        # Each member lands in their group: their ~/.profile selects it.
        vision = mlflow_as("ann", "log", "vision-ann", "ann", profile=True)
        nlp = mlflow_as("ben", "log", "nlp-ben", "ben", profile=True)
        assert vision["status"] == 200 and nlp["status"] == 200, (vision, nlp)
        ann_run, ben_run = vision["value"]["run_id"], nlp["value"]["run_id"]
        ledger["vision_ann"], ledger["nlp_ben"] = ann_run, ben_run

        # Groupmates: vision reads (READ), nlp edits (EDIT).
        assert mlflow_as("cat", "read", ann_run, profile=True)["status"] == 200
        assert mlflow_as("cat", "write", ann_run, profile=True)["status"] == 403
        assert mlflow_as("cat", "read", ben_run, workspace="nlp")["status"] == 200
        assert mlflow_as("cat", "write", ben_run, workspace="nlp")["status"] == 200
        assert "vision-ann" in mlflow_as("cat", "search", profile=True)["value"]

        # Across groups: nothing, in either workspace, and no create in the other's.
        for who, run_id, theirs, own in (("ben", ann_run, "vision", "nlp"), ("ann", ben_run, "nlp", "vision")):
            for workspace in (theirs, own):
                assert mlflow_as(who, "read", run_id, workspace=workspace)["status"] == 403
                assert mlflow_as(who, "write", run_id, workspace=workspace)["status"] == 403
            assert mlflow_as(who, "create", f"{who}-intrudes", workspace=theirs)["status"] == 403
            assert mlflow_as(who, "search", workspace=theirs)["value"] == []

    # The admin sees every group.
    for run_id, workspace in ((ann_run, "vision"), (ben_run, "nlp")):
        status = api(
            host, f"/api/2.0/mlflow/runs/get?run_id={run_id}", ADMIN, SECOND_ADMIN_PASSWORD, workspace=workspace
        )[0]
        assert status == 200


def test_a_member_who_leaves_a_group_is_refused_on_everything_there(host, ledger):
    with Tunnel("cat"):
        own = mlflow_as("cat", "log", "vision-cat", "cat", profile=True)
    assert own["status"] == 200, own
    cat_run, cat_experiment = own["value"]["run_id"], own["value"]["experiment_id"]

    result = onboard(host, ["nlp"])
    assert result.rc == 0, result.stdout[-3000:]
    assert f"cat left vision and no longer sees it; experiment {cat_experiment}" in result.stdout, result.stdout[-3000:]
    assert "export MLFLOW_WORKSPACE=nlp" in on_pc("cat", "cat .profile").stdout

    with Tunnel("ann"), Tunnel("cat"):
        # cat: nothing in vision, not even what she made there.
        for run_id in (cat_run, ledger["vision_ann"]):
            assert mlflow_as("cat", "read", run_id, workspace="vision")["status"] == 403
            assert mlflow_as("cat", "write", run_id, workspace="vision")["status"] == 403
        assert mlflow_as("cat", "create", "cat-back", workspace="vision")["status"] == 403
        assert mlflow_as("cat", "search", workspace="vision")["value"] == []
        # The control: cat still works in nlp.
        assert mlflow_as("cat", "read", ledger["nlp_ben"], profile=True)["status"] == 200
        # What cat left behind stays with the group.
        assert mlflow_as("ann", "read", cat_run, profile=True)["status"] == 200

    again = onboard(host, ["nlp"])
    assert again.rc == 0 and changed_everywhere(again) == 0, again.stdout[-3000:]


def test_gc_collects_in_every_workspace(host):
    with Tunnel("ben"):
        doomed = mlflow_as("ben", "doomed", "nlp-gc", "ben", profile=True)
    assert doomed["status"] == 200, doomed
    run_id = doomed["value"]["run_id"]

    # The control: gc as before, for the workspace `default` only, leaves the run in nlp.
    login = f"--env MLFLOW_TRACKING_USERNAME={ADMIN} --env MLFLOW_TRACKING_PASSWORD={SECOND_ADMIN_PASSWORD}"
    control = host.run(
        f"docker exec --env MLFLOW_TRACKING_URI=http://127.0.0.1:5000 {login} mlflow-server "
        "mlflow gc --backend-store-uri sqlite:////mlflow/db/mlflow.db --older-than 1s"
    )
    assert control.rc == 0, control.stdout + control.stderr
    assert run_rows(host, run_id) == "1"

    result = run_playbook(
        host, "site.yml", {**GROUPS_ON, "mlflow_server_gc_schedule": "daily", "mlflow_server_gc_older_than": "1s"}
    )
    assert result.rc == 0, result.failures
    host.run("systemctl reset-failed mlflow-gc.service")
    gc = host.run("systemctl start mlflow-gc.service")
    assert gc.rc == 0, host.check_output("journalctl -u mlflow-gc.service --no-pager -o cat")[-3000:]
    assert run_rows(host, run_id) == "0"


def test_closing_the_default_workspace_leaves_it_to_the_admin(host, ledger):
    # Something in `default` that ann did not make: the admin's.
    admin = (ADMIN, SECOND_ADMIN_PASSWORD)
    status, made = api(host, "/api/2.0/mlflow/experiments/create", *admin, "POST", {"name": "lab-default"})
    assert status == 200, made
    status, run = api(host, "/api/2.0/mlflow/runs/create", *admin, "POST", {"experiment_id": made["experiment_id"]})
    assert status == 200, run
    run_id = run["run"]["info"]["run_id"]
    with Tunnel("ann"):
        # The control: while default is open, ann reads it.
        assert mlflow_as("ann", "read", run_id)["status"] == 200

    result = run_playbook(host, "site.yml", {**GROUPS_ON, "mlflow_server_default_workspace_access": False})
    assert result.rc == 0, result.failures
    assert "grant_default_workspace_access = false" in host.file(f"{STORE}/secrets/basic_auth.ini").content_string
    with Tunnel("ann"):
        assert mlflow_as("ann", "read", run_id)["status"] == 403
        assert "lab-default" not in mlflow_as("ann", "search")["value"]
        assert mlflow_as("ann", "create", "ann-in-default")["status"] == 403
        # What she made there herself stays hers, and her group is hers as before.
        assert mlflow_as("ann", "read", ledger["before_groups"])["status"] == 200
        assert mlflow_as("ann", "read", ledger["vision_ann"], profile=True)["status"] == 200
    assert api(host, f"/api/2.0/mlflow/runs/get?run_id={run_id}", *admin)[0] == 200

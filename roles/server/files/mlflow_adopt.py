# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan or carry out the adoption of experiments of the workspace `default` into lab groups'
workspaces, and print one line of JSON:

  python mlflow_adopt.py plan|move URI '{"vision": ["resnet", "vit"]}'

  {"moves": [{"workspace": "vision", "name": "resnet", "id": "3", "runs": 2, "files": 5}],
   "done": [{"workspace": "vision", "name": "vit", "id": "4"}], "problems": [], "dry_run": ["..."]}

`move` adds "moved", the entries it moved.

The server role (tasks/adopt.yml) runs it in a one-off container of the MLflow image with the
backend store and mlruns/ (at /mlflow/mlruns) mounted, MLflow stopped for `move`.

Experiments made before workspaces were on keep artifact addresses of the form
mlflow-artifacts:/<id>/...; with workspaces on, MLflow serves those of workspace W from
mlruns/workspaces/W/<id>/. So `move` renames mlruns/<id> to mlruns/workspaces/W/<id>, then runs
`mlflow db move-resources --artifact-policy retarget` (one transaction), and renames the folders
back if that fails. Nothing is copied or deleted. An experiment whose runs or models have other
addresses (made in `default` after workspaces were on) is refused: MLflow serves them from no
other workspace."""

import json
import os
import stat
import subprocess
import sys

# mlruns/ as the one-off container mounts it (elsewhere for the unit tests).
MLRUNS = os.environ.get("MLFLOW_ADOPT_MLRUNS", "/mlflow/mlruns")
SOURCE = "default"
# The artifact root MLflow serves with --serve-artifacts (the role's command line).
SERVED_ROOT = "mlflow-artifacts:/"


def files_under(path):
    count = 0
    for _root, _dirs, names in os.walk(path):
        count += len(names)
    return count


def is_real_dir(path):
    """A folder, not a link to one (the walk and the renames never follow a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def read(uri, wanted):
    import sqlalchemy as sa
    from mlflow.store.db.utils import create_sqlalchemy_engine_with_retry

    engine = create_sqlalchemy_engine_with_retry(uri)
    names = sorted({name for names in wanted.values() for name in names})
    with engine.connect() as conn:
        workspaces = {row[0] for row in conn.execute(sa.text("SELECT name FROM workspaces"))}
        experiments = conn.execute(
            sa.text(
                "SELECT experiment_id, name, workspace, artifact_location FROM experiments WHERE name IN :names"
            ).bindparams(sa.bindparam("names", expanding=True)),
            {"names": names},
        ).fetchall()
        found = {}
        for experiment_id, name, workspace, location in experiments:
            runs = conn.execute(
                sa.text("SELECT artifact_uri FROM runs WHERE experiment_id = :id"), {"id": experiment_id}
            ).fetchall()
            models = conn.execute(
                sa.text("SELECT artifact_location FROM logged_models WHERE experiment_id = :id"),
                {"id": experiment_id},
            ).fetchall()
            found.setdefault(name, {})[workspace] = {
                "id": str(experiment_id),
                "location": location,
                "runs": len(runs),
                "addresses": [row[0] for row in runs + models],
            }
    engine.dispose()
    return workspaces, found


def plan(uri, wanted):
    workspaces, found = read(uri, wanted)
    moves, done, problems = [], [], []
    seen = {}
    for workspace, names in sorted(wanted.items()):
        if workspace not in workspaces:
            problems.append(f"the workspace {workspace} does not exist: make the group first (playbooks/onboard.yml)")
            continue
        for name in names:
            if name in seen and seen[name] != workspace:
                problems.append(f"{name} is listed for both {seen[name]} and {workspace}")
                continue
            seen[name] = workspace
            where = found.get(name, {})
            if workspace in where and SOURCE not in where:
                done.append({"workspace": workspace, "name": name, "id": where[workspace]["id"]})
                continue
            if SOURCE not in where:
                elsewhere = ", ".join(sorted(where)) or "no workspace"
                problems.append(f"no experiment {name} in the workspace default (found in {elsewhere})")
                continue
            experiment = where[SOURCE]
            problems.extend(check(workspace, name, experiment, workspace in where))
            moves.append(
                {
                    "workspace": workspace,
                    "name": name,
                    "id": experiment["id"],
                    "runs": experiment["runs"],
                    "files": files_under(os.path.join(MLRUNS, experiment["id"])),
                }
            )
    return {"moves": moves, "done": done, "problems": problems}


def check(workspace, name, experiment, taken):
    """What stops this experiment from moving, as sentences."""
    problems = []
    experiment_id = experiment["id"]
    legacy = f"{SERVED_ROOT}{experiment_id}"
    if experiment_id == "0":
        problems.append(f"{name} is the experiment every workspace starts with (id 0); it stays in default")
    if taken:
        problems.append(f"{workspace} has an experiment named {name} already")
    if experiment["location"] != legacy:
        problems.append(
            f"{name} keeps its artifacts at {experiment['location']}, not at {legacy}: made with workspaces on "
            "or another artifact store, it is served from no other workspace; leave it in default"
        )
    stray = [address for address in experiment["addresses"] if address and not address.startswith(legacy + "/")]
    if stray and experiment["location"] == legacy:
        problems.append(f"{name} has {len(stray)} runs or models whose artifacts are not under {legacy}: {stray[0]}")
    source = os.path.join(MLRUNS, experiment_id)
    if os.path.lexists(source) and not is_real_dir(source):
        problems.append(f"mlruns/{experiment_id} (of {name}) is not a folder")
    for parent in ("workspaces", f"workspaces/{workspace}"):
        path = os.path.join(MLRUNS, parent)
        if os.path.lexists(path) and not is_real_dir(path):
            problems.append(f"mlruns/{parent} is not a folder")
    if os.path.lexists(os.path.join(MLRUNS, "workspaces", workspace, experiment_id)):
        problems.append(f"mlruns/workspaces/{workspace}/{experiment_id} exists already; move it away first")
    return problems


def move_resources(uri, workspace, names, dry_run):
    command = [
        "mlflow", "db", "move-resources", uri, "--from", SOURCE, "--to", workspace,
        "--resource-type", "experiments", "--artifact-policy", "retarget",
        "--default-artifact-root", SERVED_ROOT, "--verbose",
    ]  # fmt: skip
    for name in names:
        command += ["--name", name]
    command.append("--dry-run" if dry_run else "--yes")
    # The command and its arguments as a list, no shell: the names stay single arguments.
    return subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603


def make_parent(workspace, owner):
    """mlruns/workspaces/<workspace>, as MLflow would make it: owned by whoever MLflow runs as."""
    for parent in ("workspaces", f"workspaces/{workspace}"):
        path = os.path.join(MLRUNS, parent)
        if not os.path.lexists(path):
            os.mkdir(path, 0o755)
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def put_back(workspace, renamed):
    for experiment_id in reversed(renamed):
        os.rename(os.path.join(MLRUNS, "workspaces", workspace, experiment_id), os.path.join(MLRUNS, experiment_id))


def move(uri, wanted):
    result = plan(uri, wanted)
    if result["problems"]:
        return result
    moved = []
    for workspace in sorted({entry["workspace"] for entry in result["moves"]}):
        entries = [entry for entry in result["moves"] if entry["workspace"] == workspace]
        renamed = []
        try:
            for entry in entries:
                source = os.path.join(MLRUNS, entry["id"])
                if not is_real_dir(source):
                    continue  # No run of it logged an artifact.
                make_parent(workspace, os.lstat(source))
                os.rename(source, os.path.join(MLRUNS, "workspaces", workspace, entry["id"]))
                renamed.append(entry["id"])
            answer = move_resources(uri, workspace, [entry["name"] for entry in entries], dry_run=False)
            failure = None if answer.returncode == 0 else (answer.stderr or answer.stdout).strip()[-1500:]
        except OSError as error:
            failure = str(error)
        if failure is not None:
            put_back(workspace, renamed)
            result["problems"].append(f"the move to {workspace} failed, its folders were put back: {failure}")
            break
        moved.extend(entries)
    result["moved"] = moved
    return result


def main(argv):
    action, uri, wanted = argv[1], argv[2], json.loads(argv[3])
    if action == "plan":
        result = plan(uri, wanted)
        if not result["problems"]:
            # MLflow's own dry run, for the report and as a second check of the names.
            for workspace in sorted({entry["workspace"] for entry in result["moves"]}):
                names = [entry["name"] for entry in result["moves"] if entry["workspace"] == workspace]
                answer = move_resources(uri, workspace, names, dry_run=True)
                if answer.returncode != 0:
                    result["problems"].append(f"mlflow db move-resources --dry-run: {answer.stderr.strip()[-1500:]}")
                result.setdefault("dry_run", []).append(answer.stdout.strip()[-3000:])
    else:
        result = move(uri, wanted)
    # The role reads the problems from this line; an exit status other than 0 is a crash.
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

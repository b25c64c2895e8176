"""The README's day-2 commands, exactly as it writes them, from the root of a fresh copy of
this checkout after its set-up, with no extra environment and an empty HOME: nothing that
Molecule or another test left under ~/.ansible can stand in for the clone's own collection."""

import re
import shutil
import subprocess

import pytest
from conftest import PROJECT, backups, readme_env


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """The working tree as a clone has it (tracked and untracked, not ignored), plus what
    scripts/setup.sh makes for playbooks: the collections/ links."""
    root = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = PROJECT / name.decode()
        if source.is_file():
            (root / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name.decode())
    setup = (PROJECT / "scripts" / "setup.sh").read_text()
    links = [line for line in setup.splitlines() if line.startswith(("mkdir -p collections", "ln -sfn ../"))]
    assert len(links) == 3, links
    subprocess.run(["bash", "-euc", "\n".join(links)], cwd=root, check=True)
    return root


def readme_command(playbook):
    """The first command line the README shows for a playbook, without a comment after it."""
    readme = (PROJECT / "README.md").read_text()
    found = re.findall(rf"ansible-playbook playbooks/{playbook}[^`\n#]*", readme)
    assert found, f"the README shows no ansible-playbook playbooks/{playbook}"
    return found[0].strip()


def run(clone, command, tmp_path):
    home = tmp_path / "home"
    home.mkdir(parents=True)
    return subprocess.run(
        command, shell=True, cwd=clone, env=readme_env(home), capture_output=True, text=True, check=False
    )


def test_readme_backup_and_restore_commands_work_from_a_clone(host, clone, tmp_path):
    # The user's own inventory, as inventory.example shows it, for this target.
    (clone / "inventory").write_text(
        f"[mlflow_servers]\n{host.backend.get_hostname()} ansible_connection=community.docker.docker\n\n"
        "[mlflow_servers:vars]\nmlflow_server_image=mlops/mlflow:3.17.2\n"
    )
    backup_command = readme_command("backup.yml")
    assert backup_command == "ansible-playbook playbooks/backup.yml -i inventory"
    before = set(backups(host))
    result = run(clone, backup_command, tmp_path / "b")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    [new] = sorted(set(backups(host)) - before)

    restore_command = readme_command("restore.yml")
    assert restore_command.startswith(
        "ansible-playbook playbooks/restore.yml -i inventory -e mlflow_server_restore_from="
    )
    command = (
        restore_command.split("mlflow_server_restore_from=")[0] + f"mlflow_server_restore_from={new.rsplit('/', 1)[1]}"
    )
    result = run(clone, command, tmp_path / "r")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"Restored {new}" in result.stdout

"""Restore trusts nothing in a backup folder beyond its manifest, mounted for real. Each case
copies the newest good backup (root's, under /var/backups), plants one thing a crafted backup
could hold, and runs the README's restore command on it: refused before any change, with a
message that names the entry, and the store, the backups and the container as they were. The
control: the same copy, with nothing planted, restores."""

import base64
import json

import pytest
from conftest import NEW, STORE, fingerprint, manifest, run_playbook, sh
from test_4_restore import assert_store_equals, last_good

CRAFTED = "/var/backups/crafted"
OPEN = "/var/backups/open"  # a parent that every account may write to


def add_to_manifest(host, copy, name):
    found = manifest(host, copy)
    found["files"][name] = {"sha256": "0" * 64, "size": 0}
    encoded = base64.b64encode(json.dumps(found).encode()).decode()
    sh(host, f"echo {encoded} | base64 -d > {copy}/manifest.json")


# (case, shell commands that plant it ({copy}, {file}: a listed artifact), what the refusal names)
CASES = [
    (
        "a link to the secrets",
        "ln -s {store}/secrets {copy}/mlruns/stolen",
        "holds a symbolic link mlruns/stolen",
    ),
    (
        "a listed file replaced by a link",
        "rm {copy}/{file} && ln -s /etc/shadow {copy}/{file}",
        "holds a symbolic link {file} (to /etc/shadow)",
    ),
    (
        "a hard link to a root-only file",
        "echo secret > /root/crafted-secret && ln -f /root/crafted-secret {copy}/{file}",
        "holds {file} with 2 hard links",
    ),
    ("a named pipe", "mkfifo {copy}/mlruns/pipe", "holds mlruns/pipe, "),
    (
        "a file the manifest does not list",
        "echo extra > {copy}/mlruns/extra.txt",
        "holds mlruns/extra.txt, which its manifest.json does not list",
    ),
    ("a folder of another account", "chown 65534 {copy}", "belongs to uid 65534, not root"),
]
MANIFEST_CASES = [
    (
        "a manifest name climbing out with ..",
        "../../../../etc/shadow",
        "which climbs out of the backup folder with '..'",
    ),
    ("an absolute manifest name", "/etc/shadow", "lists an absolute name '/etc/shadow'"),
]


def copy_of_last_good(host, name, parent=CRAFTED):
    copy = f"{parent}/{name.replace(' ', '-').replace('.', '')}"
    sh(host, f"mkdir -p {parent} && rm -rf {copy} && cp -a {last_good(host)} {copy}")
    return copy


def refused(host, copy, fragment):
    before = fingerprint(host)
    result = run_playbook(host, "restore.yml", {**NEW, "mlflow_server_restore_from": copy})
    said = " ".join(result.failures)
    assert result.rc != 0, said
    assert f"the backup {copy} " in said and fragment in said and "Nothing was changed." in said, said
    assert fingerprint(host) == before


@pytest.mark.parametrize(("case", "plant", "fragment"), CASES, ids=[case for case, _plant, _fragment in CASES])
def test_a_crafted_backup_is_refused_before_any_change(host, case, plant, fragment):
    copy = copy_of_last_good(host, case)
    file = next(name for name in manifest(host, copy)["files"] if name.startswith("mlruns/"))
    sh(host, plant.format(store=STORE, copy=copy, file=file))
    refused(host, copy, fragment.format(file=file))


@pytest.mark.parametrize(
    ("case", "name", "fragment"), MANIFEST_CASES, ids=[case for case, _name, _fragment in MANIFEST_CASES]
)
def test_a_manifest_naming_a_file_outside_the_backup_is_refused(host, case, name, fragment):
    copy = copy_of_last_good(host, case)
    add_to_manifest(host, copy, name)
    refused(host, copy, fragment)


def test_a_backup_below_a_folder_others_can_write_is_refused(host):
    sh(host, f"mkdir -p {OPEN} && chmod 0777 {OPEN}")
    copy = copy_of_last_good(host, "below-an-open-folder", parent=OPEN)
    refused(host, copy, f"is inside {OPEN}, which can be written by group or others, mode 0777")


def test_the_control_the_same_copy_with_nothing_planted_restores(host):
    copy = copy_of_last_good(host, "the control")
    result = run_playbook(host, "restore.yml", {**NEW, "mlflow_server_restore_from": copy})
    assert result.rc == 0, result.failures
    assert_store_equals(host, copy)
    sh(host, f"rm -rf {CRAFTED} {OPEN} /root/crafted-secret")

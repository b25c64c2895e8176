"""Bad input is refused before any change, with a message naming the variable."""

import pytest
from conftest import BACKUPS, NEW, OLD_VERSION, backups, fingerprint, run_playbook

CORRUPT = f"{BACKUPS}/corrupt-flipped-byte"
NEWER_SCHEMA = "@newest"  # the newest backup, written by 3.17.2, offered to 2.22.1

# (case, playbook, extra vars, fragments the one failure message must hold)
CASES = [
    (
        "port out of range",
        "site.yml",
        {"mlflow_server_port": 70000},
        ["mlflow_server_port must be a plain number between 1 and 65535"],
    ),
    (
        "relative store dir",
        "site.yml",
        {"mlflow_server_store_dir": "opt/mlflow"},
        ["mlflow_server_store_dir must be an absolute path"],
    ),
    (
        "relative backup dir",
        "backup.yml",
        {"mlflow_server_backup_dir": "backups"},
        ["mlflow_server_backup_dir must be an absolute path"],
    ),
    (
        "store dir /",
        "site.yml",
        {"mlflow_server_store_dir": "/"},
        ["mlflow_server_store_dir must be an absolute path other than /"],
    ),
    (
        "backup dir inside mlruns/",
        "site.yml",
        {"mlflow_server_backup_dir": "/opt/mlflow/mlruns/backups"},
        ["mlflow_server_backup_dir must be an absolute path outside mlflow_server_store_dir"],
    ),
    (
        "keep = 0",
        "backup.yml",
        {"mlflow_server_backup_keep": 0},
        ["mlflow_server_backup_keep must be a plain number of at least 1"],
    ),
    ("unknown state", "site.yml", {"mlflow_server_state": "gone"}, ["mlflow_server_state", "present, absent"]),
    (
        "image reference with spaces",
        "site.yml",
        {"mlflow_server_image": "mlops/mlflow:3.17.2 --rm"},
        ["mlflow_server_image must be a non-empty image reference without spaces"],
    ),
    ("restore without a backup named", "restore.yml", {}, ["mlflow_server_restore_from must name a backup"]),
    (
        "restore from a missing path",
        "restore.yml",
        {"mlflow_server_restore_from": f"{BACKUPS}/20990101T000000Z-manual"},
        [
            "mlflow_server_restore_from",
            "/var/backups/mlflow/20990101T000000Z-manual does not exist or holds no manifest.json",
        ],
    ),
    (
        "restore from a corrupt backup (a flipped byte)",
        "restore.yml",
        {"mlflow_server_restore_from": CORRUPT},
        ["mlflow_server_restore_from", "has a changed mlflow.db (sha256 differs from the manifest)"],
    ),
    (
        "restore a newer-schema backup",
        "restore.yml",
        {"mlflow_server_restore_from": NEWER_SCHEMA, "mlflow_server_image": f"mlops/mlflow:{OLD_VERSION}"},
        ["mlflow_server_restore_from", "written by MLflow 3.17.2, newer than MLflow 2.22.1 knows"],
    ),
    (
        "database URI with a password in its query",
        "site.yml",
        {
            "mlflow_server_backend": "postgresql",
            "mlflow_server_db_uri": "postgresql://mlflow@db.example:5432/mlflow?sslmode=verify-full&password=leaked-1",
        },
        ["mlflow_server_db_uri must not carry a password (password=, sslpassword=, passfile=) in its query"],
    ),
    (
        "relative fetch dir",
        "backup.yml",
        {"mlflow_server_backup_fetch_dir": "fetched"},
        ["mlflow_server_backup_fetch_dir must be empty or an absolute path"],
    ),
]


@pytest.fixture(scope="module")
def corrupt_backup(host):
    """A copy of the newest backup with one byte of mlflow.db flipped."""
    source = backups(host)[-1]
    flip = (
        "import sys; f = open(sys.argv[1], 'r+b'); f.seek(4096); b = f.read(1); f.seek(4096); "
        "f.write(bytes([b[0] ^ 0xFF])); f.close()"
    )
    host.check_output(f'rm -rf {CORRUPT} && cp -a {source} {CORRUPT} && python3 -c "{flip}" {CORRUPT}/mlflow.db')
    yield CORRUPT
    host.check_output(f"rm -rf {CORRUPT}")


@pytest.mark.parametrize(("case", "playbook", "extra", "fragments"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_before_any_change(host, corrupt_backup, case, playbook, extra, fragments):
    extra = {**NEW, **extra}
    if extra.get("mlflow_server_restore_from") == NEWER_SCHEMA:
        extra["mlflow_server_restore_from"] = backups(host)[-1]
    before = fingerprint(host)
    result = run_playbook(host, playbook, extra)
    assert result.rc != 0
    [failure] = result.failures
    for fragment in fragments:
        assert fragment in failure, failure
    assert result.changed == 0
    assert fingerprint(host) == before

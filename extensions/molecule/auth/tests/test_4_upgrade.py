"""The safe upgrade migrates the users' database too: 2.22.1 to 3.17.2, users and permissions kept."""

from conftest import ADMIN, SECOND_ADMIN_PASSWORD, STORE, UPGRADED, Tunnel, api, mlflow_as, record, run_playbook

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]

NEW = UPGRADED


def sql(host, db, query):
    script = f"import sqlite3; print(sqlite3.connect('file:{db}?mode=ro', uri=True).execute('{query}').fetchone()[0])"
    return host.check_output(f'python3 -c "{script}"').strip()


def auth_revision(host, db):
    # MLflow 2.x kept it in alembic_version, MLflow 3 in alembic_version_auth.
    tables = sql(host, db, "SELECT group_concat(name) FROM sqlite_master").split(",")
    table = "alembic_version_auth" if "alembic_version_auth" in tables else "alembic_version"
    return sql(host, db, f"SELECT version_num FROM {table}")


def test_upgrade_migrates_users_and_keeps_permissions(host, ledger):
    before = auth_revision(host, f"{STORE}/db/basic_auth.db")
    result = run_playbook(host, "site.yml", NEW)
    assert result.rc == 0, result.failures
    assert result.ran("Migrate the users and permissions schema with the new image")
    assert auth_revision(host, f"{STORE}/db/basic_auth.db") != before
    status, version = api(host, "/version", ADMIN, SECOND_ADMIN_PASSWORD)
    assert (status, str(version)) == (200, "3.17.2")
    with Tunnel("ann"), Tunnel("ben"):
        assert mlflow_as("ann", "read", ledger["ben_run"]["run_id"])["status"] == 200
        assert mlflow_as("ben", "write", ledger["ann_run"]["run_id"])["status"] == 403
        assert mlflow_as("ann", "log", "ann-first", "ann")["status"] == 200


def test_on_3_17_version_and_the_ui_ask_for_a_login_too(host):
    for path in ("/version", "/", "/api/2.0/mlflow/experiments/search?max_results=1"):
        status = api(host, path)[0]
        record("anonymous (3.17.2)", f"GET {path}", status)
        assert status == 401, path
    status = api(host, "/health")[0]
    assert status == 200

"""Who may do what, over real tunnels with the real mlflow client (MLflow 2.22.1 with auth)."""

from conftest import ADMIN, FIRST_ADMIN_PASSWORD, Tunnel, api, mlflow_as, on_pc, record

# The server; the PC is reached through docker exec.
testinfra_hosts = ["mlflow-auth"]


def test_health_is_open_and_everything_else_asks_for_a_login(host):
    for path, expected in [("/health", 200), ("/api/2.0/mlflow/experiments/search?max_results=1", 401), ("/", 401)]:
        status, _body = api(host, path)
        record("anonymous", f"GET {path}", status)
        assert status == expected, path


def test_the_admin_logs_in_and_a_wrong_password_is_refused(host):
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    status, _body = api(host, path, ADMIN, FIRST_ADMIN_PASSWORD)
    record("admin", f"GET {path}", status)
    assert status == 200
    status, _body = api(host, path, ADMIN, "not-the-password-at-all")
    record("admin, wrong password", f"GET {path}", status)
    assert status == 401


def test_each_member_has_a_private_credentials_file(host):
    for user in ("ann", "ben"):
        listing = on_pc(user, "stat -c '%a %U' ~/.mlflow ~/.mlflow/credentials").stdout.split("\n")
        assert listing[:2] == ["700 " + user, "600 " + user]
    # ben cannot read ann's.
    assert on_pc("ben", "cat /home/ann/.mlflow/credentials", check=False).returncode != 0


def test_ann_logs_a_run_with_her_credentials_file_alone(ledger):
    with Tunnel("ann"):
        answer = mlflow_as("ann", "log", "ann-first", "ann")
    assert answer["status"] == 200, answer
    ledger["ann_run"] = answer["value"]


def test_ben_reads_anns_run_but_cannot_write_to_it(ledger):
    with Tunnel("ben"):
        read = mlflow_as("ben", "read", ledger["ann_run"]["run_id"])
        write = mlflow_as("ben", "write", ledger["ann_run"]["run_id"])
        own = mlflow_as("ben", "log", "ben-first", "ben")
    assert read == {"status": 200, "value": {"who": "ann"}}
    assert write["status"] == 403, write
    assert own["status"] == 200, own
    ledger["ben_run"] = own["value"]

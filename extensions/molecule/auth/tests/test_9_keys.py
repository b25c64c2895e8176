"""MLflow 3's keys for the secrets it stores. The AI Gateway's passphrase and the webhook secrets'
key come from root-only files the role generated once, so MLflow never answers
`using_default_passphrase: true`, a stored webhook secret stays readable on every worker and after a
restart, and a Gateway secret after a backup and a restore; backups carry neither key. A server of
the previous release (MLflow's default passphrase, no webhook key) moves to a new passphrase with
`mlflow crypto rotate-kek`, and the secret it stored decrypts after the move. The switch turns the
Gateway off.

The decryption is MLflow's own (`_get_decrypted_secret`, as the Gateway runs it), in the server's
container with the environment of the server's process."""

import base64
import json
import time

import yaml
from conftest import ADMIN, BACKUPS, SECOND_ADMIN_PASSWORD, STORE, UPGRADED, api, run_playbook

testinfra_hosts = ["mlflow-auth"]

AS_ADMIN = (ADMIN, SECOND_ADMIN_PASSWORD)
SECRETS = f"{STORE}/secrets"
KEY_FILES = ("kek_passphrase", "kek_version", "webhook_key")
GATEWAY_CONFIG = "/ajax-api/3.0/mlflow/gateway/secrets/config"
WEBHOOKS = "/api/2.0/mlflow/webhooks"
PROVIDER_KEY = "sk-lab-provider-key-0123456789"

DECRYPT = """
import json, os, sys
server = dict(item.split("=", 1) for item in open("/proc/1/environ").read().split("\\0") if "=" in item)
for name in ("MLFLOW_CRYPTO_KEK_PASSPHRASE", "MLFLOW_CRYPTO_KEK_VERSION"):
    os.environ.pop(name, None)
    if name in server:
        os.environ[name] = server[name]
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
# db/ since 0.5.0; the store's top before (as_the_previous_release).
database = "/mlflow/db/mlflow.db" if os.path.exists("/mlflow/db/mlflow.db") else "/mlflow/mlflow.db"
store = SqlAlchemyStore("sqlite:///" + database, "/mlflow/mlruns")
try:
    print(json.dumps({"value": store._get_decrypted_secret(sys.argv[1])}))
except Exception as error:
    print(json.dumps({"error": str(error)[:300]}))
"""


def decrypt(host, secret_id):
    """The Gateway secret as the running server would decrypt it."""
    encoded = base64.b64encode(DECRYPT.encode()).decode()
    out = host.check_output(
        f"docker exec mlflow-server python -c \"import base64; exec(base64.b64decode('{encoded}'))\" {secret_id}"
    )
    return json.loads(out.strip().splitlines()[-1])


HEALTH = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:500/health', timeout=5).status)"


def wait_healthy(host):
    """Until /health answers 200; a starting MLflow may also reset the connection."""
    for _attempt in range(90):
        if host.run(f'python3 -c "{HEALTH}"').stdout.strip() == "200":
            return
        time.sleep(2)
    raise AssertionError("MLflow did not answer healthy after its restart")


def uses_default_passphrase(host):
    status, body = api(host, GATEWAY_CONFIG, *AS_ADMIN)
    assert status == 200, body
    return body["using_default_passphrase"]


def list_webhooks(host, times):
    return [api(host, WEBHOOKS, *AS_ADMIN)[0] for _attempt in range(times)]


def create_webhook(host, name):
    hook = {
        "name": name,
        "url": "https://1.1.1.1/mlflow-hook",
        "events": [{"entity": "MODEL_VERSION", "action": "CREATED"}],
        "secret": f"{name}-signing-secret",
    }
    status, body = api(host, WEBHOOKS, *AS_ADMIN, "POST", hook)
    assert status == 200, body
    return body["webhook"]["webhook_id"]


def record(host, name):
    return host.check_output(f"cat {SECRETS}/{name}")


def as_the_previous_release(host):
    """What the previous release deployed: no key files, and a container command that exports
    only the Flask key, so MLflow runs with its default passphrase and a webhook key per worker.
    Its store kept the databases at the top, and the container mounted the whole store and the
    secrets folder."""
    compose = f"{STORE}/docker-compose.yml"
    project = yaml.safe_load(host.file(compose).content_string)
    service = project["services"]["mlflow-server"]
    service["volumes"] = [f"{STORE}:/mlflow", f"{STORE}/secrets:/run/mlflow:ro"]
    service["command"] = [part.replace("/mlflow/db/", "/mlflow/") for part in service["command"]]
    exports = service["command"][2].split(" && ")
    service["command"][2] = " && ".join(part for part in exports if "MLFLOW_FLASK" in part or "exec" in part)
    flask_only = 'export MLFLOW_FLASK_SERVER_SECRET_KEY="$(cat /run/mlflow/flask_secret_key)" && exec "$@"'
    assert service["command"][2] == flask_only
    encoded = base64.b64encode(yaml.safe_dump(project).encode()).decode()
    host.check_output(f"echo {encoded} | base64 -d > {compose}")
    host.check_output(f"cd {SECRETS} && rm {' '.join(KEY_FILES)}")
    host.check_output(
        f"docker stop mlflow-server && mv {STORE}/db/* {STORE}/ && rmdir {STORE}/db"
        f" && sed -i 's|/mlflow/db/basic_auth.db|/mlflow/basic_auth.db|' {SECRETS}/basic_auth.ini"
    )
    host.check_output(f"docker compose --project-directory {STORE} up -d --wait mlflow-server")
    wait_healthy(host)


def test_a_default_deploy_has_its_own_passphrase_and_webhook_key_in_root_only_files(host):
    assert host.file(SECRETS).mode == 0o700
    for name in KEY_FILES:
        key = host.file(f"{SECRETS}/{name}")
        assert key.user == "root" and key.mode == 0o600, name
    assert len(record(host, "kek_passphrase")) == 64
    assert record(host, "kek_version") == "1"
    assert len(record(host, "webhook_key")) == 44
    assert uses_default_passphrase(host) is False
    status, info = api(host, "/api/3.0/mlflow/server-info", *AS_ADMIN)
    assert status == 200 and info["features_enabled"]["gateway"] is True, info
    # Only the server's process has them: not `docker exec`'s environment, not the Compose file.
    seen = host.check_output("docker exec mlflow-server env") + host.file(f"{STORE}/docker-compose.yml").content_string
    for name in ("kek_passphrase", "webhook_key"):
        assert record(host, name) not in seen


def test_a_server_of_the_previous_release_moves_off_the_default_passphrase_and_keeps_its_secret(host, ledger):
    as_the_previous_release(host)
    # Before: MLflow's default passphrase, as the previous release left it.
    assert uses_default_passphrase(host) is True
    status, body = api(
        host,
        "/ajax-api/3.0/mlflow/gateway/secrets/create",
        *AS_ADMIN,
        "POST",
        {"secret_name": "lab-openai", "secret_value": {"api_key": PROVIDER_KEY}, "provider": "openai"},
    )
    assert status == 200, body
    secret_id = body["secret"]["secret_id"]
    assert decrypt(host, secret_id) == {"value": {"api_key": PROVIDER_KEY}}
    # The control for the webhook test: without a key, a stored webhook secret cannot be read
    # back after a restart, and MLflow fails to list any webhook (mlflow/mlflow#19896).
    broken = create_webhook(host, "without-key")
    host.check_output("docker restart mlflow-server")
    wait_healthy(host)
    assert set(list_webhooks(host, 3)) == {500}
    script = (
        f"import sqlite3; db = sqlite3.connect('{STORE}/mlflow.db'); "
        f"db.execute('DELETE FROM webhook_events WHERE webhook_id = ?', ({broken!r},)); "
        f"db.execute('DELETE FROM webhooks WHERE webhook_id = ?', ({broken!r},)); db.commit()"
    )
    host.check_output(f"python3 -c {json.dumps(script)}")
    assert set(list_webhooks(host, 3)) == {200}

    result = run_playbook(host, "site.yml", UPGRADED)
    assert result.rc == 0, result.failures
    assert result.ran("Rotate the stored keys with mlflow crypto rotate-kek, then the records")
    # After: the role's own passphrase, at the next version, and the stored secret still decrypts.
    assert uses_default_passphrase(host) is False
    passphrase = record(host, "kek_passphrase")
    assert len(passphrase) == 64 and passphrase != "mlflow-default-kek-passphrase-for-development-only"
    assert record(host, "kek_version") == "2"
    assert not host.file(f"{SECRETS}/kek_passphrase.next").exists
    # The same run moved the databases into db/, after a backup, and MLflow serves them there.
    assert result.ran("Back up the store before its databases move")
    assert not host.file(f"{STORE}/mlflow.db").exists and not host.file(f"{STORE}/basic_auth.db").exists
    assert host.file(f"{STORE}/db/mlflow.db").mode == 0o666 and host.file(f"{STORE}/db/basic_auth.db").is_file
    assert "database_uri = sqlite:////mlflow/db/basic_auth.db" in host.file(f"{SECRETS}/basic_auth.ini").content_string
    for name in KEY_FILES:
        assert host.file(f"{SECRETS}/{name}").mode == 0o600, name
    assert decrypt(host, secret_id) == {"value": {"api_key": PROVIDER_KEY}}
    # The passphrase was never on a command line, in Ansible's output or the Compose file.
    assert passphrase not in result.stdout + result.stderr + json.dumps(result.report)
    assert passphrase not in host.file(f"{STORE}/docker-compose.yml").content_string
    assert passphrase not in host.check_output("docker inspect mlflow-server")
    again = run_playbook(host, "site.yml", UPGRADED)
    assert again.rc == 0 and again.changed == 0, again.failures
    ledger["gateway_secret"] = secret_id


def test_a_stored_webhook_secret_stays_readable_on_every_worker_and_after_a_restart(host, ledger):
    ledger["webhook"] = create_webhook(host, "registry-hook")
    assert set(list_webhooks(host, 20)) == {200}
    host.check_output("docker restart mlflow-server")
    wait_healthy(host)
    assert set(list_webhooks(host, 20)) == {200}


def test_backups_carry_neither_key_and_a_restore_keeps_the_secrets_readable(host, ledger):
    result = run_playbook(host, "backup.yml", UPGRADED)
    assert result.rc == 0, result.failures
    backup = host.check_output(f"ls -1d {BACKUPS}/*-manual | tail -1")
    keys = [record(host, "kek_passphrase"), record(host, "webhook_key")]
    patterns = " ".join(f"-e {key}" for key in keys)
    # The probe finds the keys where they are.
    found = sorted(host.check_output(f"grep -rlF {patterns} {SECRETS}").split())
    assert found == [f"{SECRETS}/kek_passphrase", f"{SECRETS}/webhook_key"]
    assert host.run(f"grep -rlF {patterns} {backup}").stdout == ""
    assert host.check_output(f"find {backup} -name 'kek*' -o -name 'webhook_key'") == ""

    restored = run_playbook(host, "restore.yml", {**UPGRADED, "mlflow_server_restore_from": backup})
    assert restored.rc == 0, restored.failures
    assert decrypt(host, ledger["gateway_secret"]) == {"value": {"api_key": PROVIDER_KEY}}
    assert set(list_webhooks(host, 10)) == {200}
    status, body = api(host, f"{WEBHOOKS}/{ledger['webhook']}", *AS_ADMIN)
    assert status == 200 and body["webhook"]["name"] == "registry-hook", body


def test_the_webhook_key_mlflow_has_is_never_replaced(host):
    fingerprint = f"sha256sum {SECRETS}/webhook_key {STORE}/docker-compose.yml"
    before = host.check_output(fingerprint)
    other = base64.urlsafe_b64encode(bytes(range(32))).decode()
    result = run_playbook(host, "site.yml", {**UPGRADED, "mlflow_server_webhook_key": other})
    assert result.rc != 0
    assert any("mlflow_server_webhook_key is not the key in" in failure for failure in result.failures), result.failures
    assert result.changed == 0
    assert host.check_output(fingerprint) == before
    assert set(list_webhooks(host, 5)) == {200}


def test_the_switch_turns_the_gateway_off(host):
    result = run_playbook(host, "site.yml", {**UPGRADED, "mlflow_server_ai_gateway": False})
    assert result.rc == 0, result.failures
    status, info = api(host, "/api/3.0/mlflow/server-info", *AS_ADMIN)
    assert status == 200 and info["features_enabled"]["gateway"] is False, info
    status, body = api(host, GATEWAY_CONFIG, *AS_ADMIN)
    assert status == 501, body

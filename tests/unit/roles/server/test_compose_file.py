# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Compose file the server role writes, rendered with Ansible's own templating for each
choice of backend, artifact store and mode (render.yml): what Compose reads, and what the role
reads back from it (the store read's compose_services and compose_image, which parse it line by
line to decide, before an upgrade, whether the managed PostgreSQL can be read)."""

import sys

import pytest
import yaml
from ansible_collections.mlops.mlflow.plugins.module_utils._store_read import compose_image, compose_services
from ansible_collections.mlops.mlflow.tests.unit.roles.server.role_play import play

EXTERNAL = {
    "case_db_uri": "postgresql://mlflow:pw@db.example:5432/mlflow",
    "case_s3_endpoint_url": "http://s3.example:9000",
}
CASES = {
    "sqlite-local-compose": {"case_backend": "sqlite", "case_artifacts": "local", "case_mode": "compose"},
    "postgresql-s3-compose": {"case_backend": "postgresql", "case_artifacts": "s3", "case_mode": "compose"},
    "postgresql-s3-swarm": {"case_backend": "postgresql", "case_artifacts": "s3", "case_mode": "swarm"},
    "sqlite-s3-compose": {"case_backend": "sqlite", "case_artifacts": "s3", "case_mode": "compose"},
    "external-compose": {"case_backend": "postgresql", "case_artifacts": "s3", "case_mode": "compose", **EXTERNAL},
    # Set up for PostgreSQL and S3, on a failed migration's way back to SQLite (migrate.yml).
    "migration-way-back": {
        "case_backend": "postgresql",
        "case_artifacts": "s3",
        "case_mode": "compose",
        "case_migration_way_back": True,
    },
}
# The services each case runs in Compose: MLflow itself in Compose mode, and the managed ones.
SERVICES = {
    "sqlite-local-compose": {"mlflow-server"},
    "postgresql-s3-compose": {"mlflow-server", "postgres", "s3"},
    "postgresql-s3-swarm": {"postgres", "s3"},
    "sqlite-s3-compose": {"mlflow-server", "s3"},
    "external-compose": {"mlflow-server"},
    "migration-way-back": {"mlflow-server"},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("compose")
    hosts = {name: {"ansible_python_interpreter": sys.executable, **case} for name, case in CASES.items()}
    play("render.yml", hosts, out)
    return {name: out / f"{name}.yml" for name in CASES}


@pytest.mark.parametrize("case", CASES)
def test_compose_runs_the_services_of_the_choice(rendered, case):
    services = yaml.safe_load(rendered[case].read_text())["services"] or {}
    assert set(services) == SERVICES[case]
    managed = SERVICES[case] - {"mlflow-server"}
    if "mlflow-server" in services:
        assert set(services["mlflow-server"].get("depends_on", {})) == managed
        assert all(
            value == {"condition": "service_healthy"}
            for value in services["mlflow-server"].get("depends_on", {}).values()
        )
    for name in managed:
        assert services[name]["container_name"] == f"mlflow-{name}"
        assert "ports" not in services[name]
        assert ("swarm" in services[name].get("networks", [])) is (CASES[case]["case_mode"] == "swarm")


@pytest.mark.parametrize("case", CASES)
def test_the_role_reads_the_services_and_the_image_back(rendered, case):
    # The store read parses the file line by line: a managed service it misses is one an upgrade
    # does not start to read its data.
    assert set(compose_services(str(rendered[case]))) - {"default", "swarm"} == SERVICES[case]
    expected = "ghcr.io/mlflow/mlflow:v3.17.2" if "mlflow-server" in SERVICES[case] else "mlops/postgres:17"
    assert compose_image(str(rendered[case])) == expected


def test_the_data_folders_are_mounted_only_for_their_choice(rendered):
    def targets(case):
        server = yaml.safe_load(rendered[case].read_text())["services"]["mlflow-server"]
        return {volume["target"] for volume in server["volumes"] if volume.get("type") == "bind"}

    assert {"/mlflow/db", "/mlflow/mlruns"} <= targets("sqlite-local-compose")
    assert "/mlflow/db" in targets("sqlite-s3-compose") and "/mlflow/mlruns" not in targets("sqlite-s3-compose")
    assert not {"/mlflow/db", "/mlflow/mlruns"} & targets("postgresql-s3-compose")
    assert "/run/mlflow/pgpass" in targets("external-compose")


def test_a_failed_migration_goes_back_to_the_sqlite_deployment(rendered):
    """The way back starts, from the choice's data alone, the Compose file a SQLite host has."""
    assert rendered["migration-way-back"].read_text() == rendered["sqlite-local-compose"].read_text()
    # The control: the same host's own Compose file is another one.
    assert rendered["postgresql-s3-compose"].read_text() != rendered["sqlite-local-compose"].read_text()

# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the server role decides from the one host read (vars/main/main.yml), evaluated with
Ansible's own templating (decide.yml) for pretend host reads: whether the admin's password is
due for rotation (the health wait and admin.yml read the record then), and whether the stored
keys are due to move to a new passphrase (keys.yml stages it, rekey.yml moves them, start.yml
starts MLflow after); and which steps have work (gates.yml): the deploy includes the guard's,
gc's, the metrics' and the admin record's files only then. The host read keys each secret file's
SHA-1 with the run's digest key."""

import hashlib
import json

import pytest
from ansible_collections.mlops.mlflow.tests.unit.roles.server.role_play import play

SECRETS = "/opt/mlflow/secrets"
KEY = "digest-key-of-this-run"
DEFAULT_KEK = "mlflow-default-kek-passphrase-for-development-only"


def read(content=None, mode="0600"):
    """A file as the host read reports it: missing, or with its keyed SHA-1."""
    if content is None:
        return {"exists": False, "mode": None, "owner": None, "sha1": None}
    return {"exists": True, "mode": mode, "owner": "root", "sha1": hashlib.sha1((KEY + content).encode()).hexdigest()}


def files(admin=None, kek=None, kek_next=None):
    return {
        f"{SECRETS}/admin_password": read(admin),
        f"{SECRETS}/kek_passphrase": read(kek),
        f"{SECRETS}/kek_passphrase.next": read(kek_next),
    }


CASES = {
    # (host read, variables): (admin rotation due, rekey due)
    "new store": ({"case_files": files()}, (False, False)),
    "record is the configured password": ({"case_files": files(admin="configured-admin-pw")}, (False, False)),
    "record differs": ({"case_files": files(admin="older-admin-pw")}, (True, False)),
    "configured passphrase recorded": (
        {"case_files": files(kek="lab-passphrase"), "case_kek_passphrase": "lab-passphrase"},
        (False, False),
    ),
    "configured passphrase is new": (
        {"case_files": files(kek="lab-passphrase"), "case_kek_passphrase": "another-passphrase"},
        (False, True),
    ),
    "a move was staged and not finished": ({"case_files": files(kek="generated", kek_next="next")}, (False, True)),
    "none configured, MLflow on its default": ({"case_files": files(kek=DEFAULT_KEK)}, (False, True)),
    "none configured, a generated one recorded": ({"case_files": files(kek="generated")}, (False, False)),
    "served before the role kept one, none configured": (
        {"case_files": files(), "case_compose_image": "mlops/mlflow:3.17.2"},
        (False, True),
    ),
    "new store, passphrase configured": (
        {"case_files": files(), "case_kek_passphrase": "lab-passphrase"},
        (False, False),
    ),
}


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    out = tmp_path_factory.mktemp("decide")
    play("decide.yml", {f"case{i}": case for i, (case, _want) in enumerate(CASES.values())}, out)
    return {name: json.loads((out / f"case{i}.json").read_text()) for i, name in enumerate(CASES)}


# One test for all the cases, so that one pytest worker plays decide.yml: xdist spread parametrized
# cases over both workers, and each worker played it for its share.
def test_the_role_decides_from_the_host_read(decided):
    wanted = {case: {"admin_rotation_due": want[0], "rekey_due": want[1]} for case, (_vars, want) in CASES.items()}
    wrong = {case: (decided[case], wanted[case]) for case in CASES if decided[case] != wanted[case]}
    assert wrong == {}, "case: (decided, expected)"


# Which step files the deploy includes (tasks/main.yml's guard and upgrade, upkeep.yml's gc, metrics
# and admin record), for pretend host reads of a host the role converged with the case's settings, and of each
# way it can differ from that. A converged host includes none; each difference includes its step.
UNIT = "/etc/systemd/system/"
GUARD = [f"{UNIT}mlflow-loopback-guard.service", f"{UNIT}mlflow-loopback-guard-check.service"]
GUARD += [f"{UNIT}mlflow-loopback-guard-check.timer"]
GC = [f"{UNIT}mlflow-gc.service", f"{UNIT}mlflow-gc.timer"]
METRICS = [f"{UNIT}mlflow-metrics.service", f"{UNIT}mlflow-metrics.timer", "/usr/local/lib/mlflow-metrics.py"]
METRICS += ["/usr/local/lib/mlflow-status.py", "/var/lib/prometheus/node-exporter"]
TRACES = ["/usr/local/lib/mlflow-traces.py"]
ADMIN = [f"{SECRETS}/admin_password"]
DEFAULT = GUARD + METRICS + ADMIN
GC_ON = {"gc_schedule": "daily"}
BEHIND = {"db": {"schema_revision": "older"}}
AUTH_BEHIND = {"auth_db": {"schema_revision": "older"}}
DAMAGED = {"error": "file is not a database"}

GATE_CASES = {
    # name: (settings, present, drift, the steps that have work)
    "converged with the defaults": ({}, DEFAULT, {}, set()),
    "converged with gc and trace retention": (
        {**GC_ON, "trace_retention": "30d"},
        DEFAULT + GC + TRACES,
        {},
        set(),
    ),
    "converged with the guard and the metrics off": (
        {"loopback_guard": False, "metrics_textfile_dir": ""},
        ADMIN,
        {},
        set(),
    ),
    "the guard's unit changed": ({}, DEFAULT, {"case_stale": [GUARD[0]]}, {"loopback"}),
    "the guard's check timer changed": ({}, DEFAULT, {"case_stale": [GUARD[2]]}, {"loopback"}),
    "the guard's check timer is missing": ({}, [p for p in DEFAULT if p != GUARD[2]], {}, {"loopback"}),
    "the guard is stopped": ({}, DEFAULT, {"case_down": ["mlflow-loopback-guard.service"]}, {"loopback"}),
    "the guard's check timer is stopped": (
        {},
        DEFAULT,
        {"case_down": ["mlflow-loopback-guard-check.timer"]},
        {"loopback"},
    ),
    "a guard rule was flushed": ({}, DEFAULT, {"case_rules": False}, {"loopback"}),
    "the guard's rules could not be read (no iptables yet)": ({}, DEFAULT, {"case_rules": None}, {"loopback"}),
    "the guard was turned off": ({"loopback_guard": False}, DEFAULT, {}, {"loopback"}),
    "gc was turned on": (GC_ON, DEFAULT, {}, {"gc"}),
    "the gc timer changed": (GC_ON, DEFAULT + GC, {"case_stale": [GC[1]]}, {"gc"}),
    "the gc timer is stopped": (GC_ON, DEFAULT + GC, {"case_down": ["mlflow-gc.timer"]}, {"gc"}),
    "gc was turned off": ({}, DEFAULT + GC, {}, {"gc"}),
    "trace retention was turned on": ({**GC_ON, "trace_retention": "30d"}, DEFAULT + GC, {}, {"gc"}),
    "the trace retention script changed": (
        {**GC_ON, "trace_retention": "30d"},
        DEFAULT + GC + TRACES,
        {"case_stale": TRACES},
        {"gc"},
    ),
    "trace retention was turned off": (GC_ON, DEFAULT + GC + TRACES, {}, {"gc"}),
    "the metrics collector changed": ({}, DEFAULT, {"case_stale": [METRICS[2]]}, {"metrics"}),
    "the status script changed": ({}, DEFAULT, {"case_stale": [METRICS[3]]}, {"metrics"}),
    "the metrics service changed": ({}, DEFAULT, {"case_stale": [METRICS[0]]}, {"metrics"}),
    "the metrics timer is stopped": ({}, DEFAULT, {"case_down": ["mlflow-metrics.timer"]}, {"metrics"}),
    "the textfile folder is missing": ({}, [p for p in DEFAULT if p != METRICS[4]], {}, {"metrics"}),
    "the metrics were turned off": ({"metrics_textfile_dir": ""}, DEFAULT, {}, {"metrics"}),
    "the admin record differs": ({}, DEFAULT, {"case_stale": ADMIN}, {"admin"}),
    "the admin record is readable by others": ({}, DEFAULT, {"case_mode": {ADMIN[0]: "0644"}}, {"admin"}),
    "there is no admin record yet": ({}, GUARD + METRICS, {}, {"admin"}),
    "a new store, no schema yet": (
        {},
        DEFAULT,
        {"case_store": {"db": {"schema_revision": None}, "auth_db": {"schema_revision": None}}},
        set(),
    ),
    "the tracking schema is behind the image": ({}, DEFAULT, {"case_store": BEHIND}, {"upgrade"}),
    "the auth schema is behind the image": ({}, DEFAULT, {"case_store": AUTH_BEHIND}, {"upgrade"}),
    "mlflow.db cannot be read": ({}, DEFAULT, {"case_store": {"db": DAMAGED}}, {"upgrade"}),
    "basic_auth.db cannot be read": ({}, DEFAULT, {"case_store": {"auth_db": DAMAGED}}, {"upgrade"}),
    "PostgreSQL's data beside SQLite": ({}, DEFAULT, {"case_store": {"database_data": True}}, {"upgrade"}),
    "the backend is PostgreSQL": ({"postgresql": True}, DEFAULT, {}, {"upgrade"}),
    "the image is only planned (check mode)": ({}, DEFAULT, {"case_image_id": None}, {"upgrade"}),
}


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gates")
    hosts = {}
    for i, (settings, present, drift, _want) in enumerate(GATE_CASES.values()):
        hosts[f"case{i}"] = {
            "case_settings": settings,
            "case_present": present,
            "case_stale": [],
            "case_mode": {},
            "case_down": [],
            **drift,
        }
    play("gates.yml", hosts, out)
    decided = json.loads((out / "gates.json").read_text())
    return {name: decided[f"case{i}"] for i, name in enumerate(GATE_CASES)}


# One test for all the cases, as above.
def test_a_step_is_included_only_when_the_host_read_found_work_for_it(gated):
    found = {case: {step for step, work in gated[case].items() if work is True} for case in GATE_CASES}
    wrong = {case: (steps, GATE_CASES[case][3]) for case, steps in found.items() if steps != GATE_CASES[case][3]}
    assert wrong == {}, "case: (included, expected)"
    assert all(isinstance(work, bool) for steps in gated.values() for work in steps.values()), gated

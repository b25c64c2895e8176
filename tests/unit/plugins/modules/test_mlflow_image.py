# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_image run the way Ansible runs it, with a stand-in docker command on PATH that answers
as the real one does and logs each call. The real engine and image are the Molecule scenarios'
(the lifecycle scenario asserts that a warm run does not ask again)."""

from __future__ import annotations

import json
import stat

import pytest
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run

IMAGE_ID = "sha256:" + "ab" * 32
FACTS = {"version": "3.17.2", "tracking": {"head": "h2", "known": ["h1", "h2"]}, "auth": None, "extras": {"auth": True}}
ANSWER = json.dumps(FACTS)
PROBE = "import json\nprint(json.dumps({}))\n"

DOCKER = """#!/bin/sh
echo "$*" >> "{log}"
case "$1 $2" in
  "image inspect") [ -n "{image_id}" ] && echo "{image_id}" && exit 0; echo "No such image" >&2; exit 1;;
  "run --rm") script=$(echo "$*" | sed -n 's/.*--volume \\([^:]*\\):.*/\\1/p'); cp "$script" "{log}.probe"
    echo "warming up"; echo '{answer}'; exit {rc};;
esac
exit 2
"""


@pytest.fixture
def docker(tmp_path, monkeypatch):
    """Install the stand-in: docker(image_id=..., answer=..., rc=...) -> the log of its calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.log"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    def install(image_id=IMAGE_ID, answer=ANSWER, rc=0):
        script = bin_dir / "docker"
        script.write_text(DOCKER.format(log=log, image_id=image_id or "", answer=answer, rc=rc))
        script.chmod(0o755)
        return log

    return install


def calls(log):
    return log.read_text().splitlines() if log.exists() else []


def test_asks_once_per_image_id_and_keeps_the_answer_private(docker, tmp_path, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_image

    log, cache = docker(), tmp_path / "cache"
    code, result = run(mlflow_image, capsys, image="mlops/mlflow:3.17.2", cache_dir=str(cache), probe=PROBE)
    assert code == 0 and result["changed"] and result["asked"]
    assert result["image_id"] == IMAGE_ID and result["image_facts"] == FACTS
    # The probe ran in a one-off container without a network, mounted read-only, the text given.
    [_inspect, probe_run] = calls(log)
    assert probe_run.startswith("run --rm --network none --volume ") and probe_run.endswith(
        ":/mlflow_image_info.py:ro mlops/mlflow:3.17.2 python /mlflow_image_info.py"
    )
    assert (tmp_path / "docker.log.probe").read_text() == PROBE
    kept = cache / f"{IMAGE_ID[7:]}.v3.json"
    assert json.loads(kept.read_text()) == FACTS
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    # The second call reads what was kept: no container.
    code, result = run(mlflow_image, capsys, image="mlops/mlflow:3.17.2", cache_dir=str(cache), probe=PROBE)
    assert code == 0 and not result["changed"] and not result["asked"] and result["image_facts"] == FACTS
    assert len(calls(log)) == 3


def test_check_mode_asks_but_keeps_nothing(docker, tmp_path, capsys):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_image

    docker()
    cache = tmp_path / "cache"
    code, result = run(
        mlflow_image, capsys, image="mlops/mlflow:3.17.2", cache_dir=str(cache), probe=PROBE, _ansible_check_mode=True
    )
    assert code == 0 and result["changed"] and result["image_facts"] == FACTS
    assert not cache.exists()


@pytest.mark.parametrize(
    ("image_id", "probe", "asked"),
    [(None, PROBE, False), (IMAGE_ID, None, False), (IMAGE_ID, PROBE, True)],
    ids=["missing image", "no probe", "control: both"],
)
def test_nothing_to_ask_without_the_image_or_a_probe(docker, tmp_path, capsys, image_id, probe, asked):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_image

    log = docker(image_id=image_id)
    args = {"image": "mlops/mlflow:3.17.2", "cache_dir": str(tmp_path / "cache")}
    code, result = run(mlflow_image, capsys, **args, **({"probe": probe} if probe else {}))
    assert code == 0 and result["asked"] is asked and result["changed"] is asked
    assert result["image_id"] == image_id and (result["image_facts"] is not None) is asked
    assert any(call.startswith("run ") for call in calls(log)) is asked


@pytest.mark.parametrize(("answer", "rc"), [("not json", 0), ("", 1)])
def test_an_image_that_cannot_answer_fails_saying_what_to_use(docker, tmp_path, capsys, answer, rc):
    from ansible_collections.mlops.mlflow.plugins.modules import mlflow_image

    docker(answer=answer, rc=rc)
    cache = tmp_path / "cache"
    code, result = run(mlflow_image, capsys, image="busybox", cache_dir=str(cache), probe=PROBE)
    assert code == 1 and result["msg"].startswith("image busybox did not say what it knows and has")
    assert "Use the official ghcr.io/mlflow/mlflow image" in result["msg"]
    assert not cache.exists() or not list(cache.glob("*.json"))

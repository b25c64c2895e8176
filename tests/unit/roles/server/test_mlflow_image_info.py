# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""roles/server/files/mlflow_image_info.py's schema heads, read from the migration scripts' text.

The role trusts these heads to tell whether a database needs `mlflow db upgrade` before an image
may serve it. The text read must give exactly Alembic's answer, for the MLflow in the venv (the
pinned one) and for the script shapes Alembic allows; where the text cannot say, Alembic answers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "roles" / "server" / "files"))
import mlflow_image_info

MLFLOW = Path(importlib.util.find_spec("mlflow").submodule_search_locations[0])


@pytest.fixture
def alembic_calls(monkeypatch):
    """The directories the probe handed to Alembic (which still answers them)."""
    calls = []
    real = mlflow_image_info.alembic_revisions

    def spy(directory):
        calls.append(directory)
        return real(directory)

    monkeypatch.setattr(mlflow_image_info, "alembic_revisions", spy)
    return calls


@pytest.mark.parametrize("where", ["store/db_migrations", "server/auth/db/migrations"], ids=["tracking", "auth"])
def test_mlflows_own_migrations_are_read_from_their_text(alembic_calls, where):
    directory = str(MLFLOW / where)
    answer = mlflow_image_info.revisions(directory)
    assert alembic_calls == []
    assert answer == mlflow_image_info.alembic_revisions(directory)
    assert answer["head"] in answer["known"] and len(answer["known"]) == len(set(answer["known"]))


def scripts(tmp_path, *bodies):
    """An Alembic directory (script.py.mako is not needed to read one) with one script per body."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "__init__.py").write_text("")
    for index, body in enumerate(bodies):
        (versions / f"{index:02d}_step.py").write_text(body + "\n\ndef upgrade():\n    pass\n")
    return str(tmp_path)


LINE = ('revision = "a1"\ndown_revision = None', 'revision = "b2"\ndown_revision = "a1"')
SHAPES = {
    # Read from the text: literal assignments, with or without a type, and a merge.
    "one line": (LINE, False),
    "annotated": (
        (
            'from typing import Union\nrevision: str = "a1"\ndown_revision: Union[str, None] = None',
            'from typing import Union\nrevision: str = "b2"\ndown_revision: Union[str, None] = "a1"',
        ),
        False,
    ),
    "a merge": (
        (*LINE, 'revision = "c3"\ndown_revision = "a1"', 'revision = "d4"\ndown_revision = ("b2", "c3")'),
        False,
    ),
    # Alembic's: a computed value, a branch label, a dependency.
    "a computed value": ((*LINE[:1], 'PARENT = "a1"\nrevision = "b2"\ndown_revision = PARENT'), True),
    "a branch label": ((*LINE[:1], 'revision = "b2"\ndown_revision = "a1"\nbranch_labels = ("x",)'), True),
    "a dependency": ((*LINE, 'revision = "c3"\ndown_revision = "b2"\ndepends_on = "a1"'), True),
}


@pytest.mark.parametrize(("bodies", "alembic_answers"), SHAPES.values(), ids=SHAPES.keys())
def test_each_shape_gets_alembics_answer(tmp_path, alembic_calls, bodies, alembic_answers):
    directory = scripts(tmp_path, *bodies)
    answer = mlflow_image_info.revisions(directory)
    assert alembic_calls == ([directory] if alembic_answers else [])
    assert answer == mlflow_image_info.alembic_revisions(directory)


def test_two_heads_are_alembics_error_not_a_guess(tmp_path, alembic_calls):
    from alembic.util.exc import CommandError

    directory = scripts(tmp_path, *LINE, 'revision = "c3"\ndown_revision = "a1"')
    with pytest.raises(CommandError):
        mlflow_image_info.revisions(directory)
    assert alembic_calls == [directory]

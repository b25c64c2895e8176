# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_store_info run the way Ansible runs it."""

from __future__ import annotations

from ansible_collections.mlops.mlflow.plugins.modules import mlflow_backup, mlflow_store_info
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run


def test_store_info_lists_backups_with_their_marks(store, tmp_path, capsys):
    run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    code, info = run(mlflow_store_info, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    assert code == 0 and not info["changed"]
    assert info["db"]["schema_revision"] == "abc123" and info["artifacts"] == 1
    [listed] = info["backups"]
    assert listed["label"] == "manual" and listed["counts"]["runs_active"] == 2 and listed["anomaly"] is None

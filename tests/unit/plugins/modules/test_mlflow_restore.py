# -*- coding: utf-8 -*-
# Copyright (c) mlops.mlflow developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""mlflow_restore run the way Ansible runs it, on backups mlflow_backup wrote."""

from __future__ import annotations

import os

from ansible_collections.mlops.mlflow.plugins.modules import mlflow_backup, mlflow_restore
from ansible_collections.mlops.mlflow.tests.unit.plugins.modules.store_modules import run


def test_restore_swaps_in_and_reverts(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").write_bytes(b"swapped by an attacker")
    code, swapped = run(mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"])
    assert code == 0 and swapped["changed"]
    assert (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").read_bytes() == b"\x80\x04model"
    assert oct(os.stat(store / "db" / "mlflow.db").st_mode & 0o777) == "0o666"
    code, _reverted = run(mlflow_restore, capsys, state="reverted", store_dir=str(store), kept=swapped["kept"])
    assert code == 0
    assert (store / "mlruns" / "1" / "r1" / "artifacts" / "model.pkl").read_bytes() == b"swapped by an attacker"


def test_restore_in_check_mode_changes_nothing(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    before = sorted(os.listdir(store))
    code, result = run(
        mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"], _ansible_check_mode=True
    )
    assert code == 0 and result["changed"] and result["msg"].startswith("Would restore ")
    assert sorted(os.listdir(store)) == before


def test_restore_check_names_the_problem(store, tmp_path, capsys):
    code, result = run(mlflow_restore, capsys, store_dir=str(store), backup=str(tmp_path / "missing"))
    assert code == 0 and not result["ok"]
    assert result["msg"] == f"{tmp_path / 'missing'} does not exist or holds no manifest.json."


def test_restore_refuses_a_bad_mode(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    code, result = run(
        mlflow_restore, capsys, state="restored", store_dir=str(store), backup=backup["path"], db_mode="rw-rw-rw-"
    )
    assert code == 1 and result["msg"] == "db_mode must be an octal mode such as '0666', got 'rw-rw-rw-'."


def test_restore_refuses_a_link_in_the_backup_in_check_mode_too(store, tmp_path, capsys):
    _code, backup = run(mlflow_backup, capsys, store_dir=str(store), backup_dir=str(tmp_path / "b"))
    args = dict(state="restored", store_dir=str(store), backup=backup["path"])
    code, result = run(mlflow_restore, capsys, _ansible_check_mode=True, **args)
    assert code == 0 and result["msg"].startswith("Would restore ")
    os.symlink("/etc", os.path.join(backup["path"], "mlruns", "1", "r1", "artifacts", "x"))
    before = sorted(os.listdir(store))
    for check_mode in (True, False):
        code, result = run(mlflow_restore, capsys, _ansible_check_mode=check_mode, **args)
        assert code == 1, result
        assert result["msg"] == (
            f"{backup['path']} cannot be trusted: it holds a symbolic link mlruns/1/r1/artifacts/x (to /etc): "
            "a backup holds only files and folders; remove it. Nothing was changed."
        )
    assert sorted(os.listdir(store)) == before
    code, result = run(mlflow_restore, capsys, store_dir=str(store), backup=backup["path"])
    assert code == 0 and not result["ok"]
    assert result["problems"] == [
        "holds a symbolic link mlruns/1/r1/artifacts/x (to /etc): a backup holds only files and folders; remove it"
    ]


def test_db_dir_moves_an_earlier_release_layout_once(store, capsys):
    os.rename(store / "db" / "mlflow.db", store / "mlflow.db")
    os.rmdir(store / "db")
    code, planned = run(mlflow_restore, capsys, state="db_dir", store_dir=str(store), _ansible_check_mode=True)
    assert code == 0 and planned["changed"] and planned["msg"] == f"Would move mlflow.db into db/ in {store}."
    assert (store / "mlflow.db").is_file()
    code, moved = run(mlflow_restore, capsys, state="db_dir", store_dir=str(store))
    assert code == 0 and moved["changed"] and moved["moved"] == ["mlflow.db"]
    assert sorted(os.listdir(store / "db")) == ["mlflow.db"] and not (store / "mlflow.db").exists()
    code, again = run(mlflow_restore, capsys, state="db_dir", store_dir=str(store))
    assert code == 0 and not again["changed"] and again["moved"] == []

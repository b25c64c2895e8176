"""Each role's documented interface matches its code: the variables in
defaults/main.yml are exactly those in every entry point of meta/argument_specs.yml,
with the same defaults, and the README's table lists the server role's."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "defaults" / "main.yml").exists())


def load(path):
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_list_the_defaults(role):
    defaults = load(ROOT / "roles" / role / "defaults" / "main.yml")
    specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    for entry_point, spec in specs.items():
        options = spec["options"]
        assert sorted(options) == sorted(defaults), entry_point
        for name, option in options.items():
            if "default" in option:
                assert option["default"] == defaults[name], f"{entry_point}: {name}"


def test_readme_table_lists_every_server_variable():
    defaults = load(ROOT / "roles" / "server" / "defaults" / "main.yml")
    readme = (ROOT / "README.md").read_text()
    assert [name for name in defaults if f"| `{name}` |" not in readme] == []

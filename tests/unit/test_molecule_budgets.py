"""Every Molecule scenario has a minutes budget, which scripts/test.sh prints its time against,
and a lane; scenarios whose targets have the same container names share a lane. The functional
tests have a budget and a lane too (they run in it with the two lanes)."""

from pathlib import Path

import yaml

MOLECULE = Path(__file__).resolve().parents[2] / "extensions" / "molecule"


def _budgets():
    lines = [line.split() for line in (MOLECULE / "budgets").read_text().splitlines()]
    return [fields for fields in lines if fields and not fields[0].startswith("#")]


def _targets(scenario):
    """The container names a scenario creates: its own platforms, else config.yml's."""
    config = yaml.safe_load((MOLECULE / scenario / "molecule.yml").read_text())
    platforms = config.get("platforms") or yaml.safe_load((MOLECULE / "config.yml").read_text())["platforms"]
    return {platform["name"] for platform in platforms}


def test_every_scenario_has_one_budget_and_no_budget_is_left_over():
    scenarios = sorted(path.parent.name for path in MOLECULE.glob("*/molecule.yml"))
    budgets = _budgets()
    assert sorted(name for name, *_rest in budgets) == sorted([*scenarios, "functional"])
    assert all(len(fields) == 3 for fields in budgets), "each line: scenario minutes lane"
    assert all(minutes.isdigit() and int(minutes) > 0 for _name, minutes, _lane in budgets)
    assert {lane for *_rest, lane in budgets} == {"1", "2"}


def test_scenarios_whose_targets_share_a_name_share_a_lane():
    lanes = {name: lane for name, _minutes, lane in _budgets() if name != "functional"}
    scenarios = sorted(lanes)
    clashes = [
        (a, b)
        for i, a in enumerate(scenarios)
        for b in scenarios[i + 1 :]
        if _targets(a) & _targets(b) and lanes[a] != lanes[b]
    ]
    assert not clashes, f"these scenarios create containers of the same name in different lanes: {clashes}"
    # The positive control: default and server do create the same names.
    assert _targets("default") & _targets("server") == {"debian13", "debian12"}

"""Every Molecule scenario has a minutes budget, which scripts/test.sh prints its time against."""

from pathlib import Path

MOLECULE = Path(__file__).resolve().parents[2] / "extensions" / "molecule"


def test_every_scenario_has_one_budget_and_no_budget_is_left_over():
    scenarios = sorted(path.parent.name for path in MOLECULE.glob("*/molecule.yml"))
    lines = [line.split() for line in (MOLECULE / "budgets").read_text().splitlines()]
    budgets = [fields for fields in lines if fields and not fields[0].startswith("#")]
    assert sorted(name for name, _minutes in budgets) == scenarios
    assert all(minutes.isdigit() and int(minutes) > 0 for _name, minutes in budgets)

"""A release a maintainer can trust: galaxy.yml's version is the highest version_added of any
module, doc fragment or role option (so Galaxy never shows an option newer than the collection
it came in), and the changelog (antsibull-changelog's changelogs/changelog.yaml and the
CHANGELOG.md made from it) has no release newer than galaxy.yml and a section for each one."""

import ast
from pathlib import Path

import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = Path(__file__).resolve().parents[2]


def version_added(node, where):
    """(version, where) for every version_added in a parsed DOCUMENTATION or argument spec."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "version_added":
                yield str(value), where
            else:
                yield from version_added(value, f"{where} {key}")
    elif isinstance(node, list):
        for item in node:
            yield from version_added(item, where)


def python_docs(path):
    """The DOCUMENTATION of a module (a constant) or a doc fragment (a class attribute), parsed."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            yield yaml.safe_load(node.value.value)


def every_version_added(root):
    found = []
    for path in sorted((root / "plugins").glob("*/*.py")):
        for doc in python_docs(path):
            found += version_added(doc, str(path.relative_to(root)))
    for path in sorted((root / "roles").glob("*/meta/argument_specs.yml")):
        found += version_added(yaml.safe_load(path.read_text()), str(path.relative_to(root)))
    return found


def galaxy_version(root):
    return str(yaml.safe_load((root / "galaxy.yml").read_text())["version"])


def newer_than_galaxy(root):
    galaxy = LooseVersion(galaxy_version(root))
    return sorted({where for version, where in every_version_added(root) if LooseVersion(version) > galaxy})


def test_galaxy_version_is_the_highest_version_added():
    assert newer_than_galaxy(ROOT) == [], f"version_added above galaxy.yml's {galaxy_version(ROOT)}"
    highest = max((LooseVersion(version) for version, _where in every_version_added(ROOT)))
    assert str(highest) == galaxy_version(ROOT)


def test_an_option_newer_than_the_release_is_found(tmp_path):
    """The control: a module whose option came after galaxy.yml's version is named."""
    (tmp_path / "plugins" / "modules").mkdir(parents=True)
    (tmp_path / "roles").mkdir()
    (tmp_path / "galaxy.yml").write_text("version: 0.6.0\n")
    (tmp_path / "plugins" / "modules" / "planted.py").write_text(
        'DOCUMENTATION = r"""\nmodule: planted\nversion_added: 0.6.0\noptions:\n'
        "  later:\n    description: An option of a release to come.\n    version_added: 0.7.0\n"
        '"""\n'
    )
    assert newer_than_galaxy(tmp_path) == ["plugins/modules/planted.py options later"]


def test_the_changelog_has_no_release_newer_than_galaxy_and_a_section_for_each():
    releases = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())["releases"]
    galaxy = LooseVersion(galaxy_version(ROOT))
    assert [version for version in releases if LooseVersion(version) > galaxy] == []
    changelog = (ROOT / "CHANGELOG.md").read_text()
    for version in releases:
        assert f"## v{version}".replace(".", "\\.") in changelog, version

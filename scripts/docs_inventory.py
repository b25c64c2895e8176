"""Write the intersphinx inventory of the Ansible docs pages our docs site links to.

The pages antsibull-docs renders refer to labels of the Ansible docsite (the common return
values, the configuration settings, other collections' modules). Sphinx resolves them from
that site's objects.inv, which this machine cannot download. So scripts/test.sh's docs stage
builds offline from this list, and a reference to a label missing here fails the build
(Sphinx runs nitpicky, warnings as errors): add it here with its page."""

import sys
import zlib

BASE = "https://docs.ansible.com/projects/ansible/devel/"

# label: (page under BASE, title)
LABELS = {
    "common_return_values": ("reference_appendices/common_return_values.html", "Return Values"),
    "ansible_configuration_settings": ("reference_appendices/config.html", "Ansible Configuration Settings"),
}
# Other collections' modules that our docs name with M(): their pages follow one pattern.
MODULES = ["ansible.builtin.uri", "ansible.builtin.user"]
for fqcn in MODULES:
    namespace, collection, name = fqcn.split(".")
    LABELS[f"ansible_collections.{fqcn}_module"] = (f"collections/{namespace}/{collection}/{name}_module.html", fqcn)


def inventory():
    """Sphinx's inventory format, version 2: four header lines, then zlib-compressed entries."""
    header = b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n"
    header += b"# The remainder of this file is compressed using zlib.\n"
    entries = "".join(f"{label} std:label -1 {page} {title}\n" for label, (page, title) in sorted(LABELS.items()))
    return header + zlib.compress(entries.encode())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT.inv")
    with open(sys.argv[1], "wb") as out:
        out.write(inventory())

"""Stand-in for the pip bootstrap script that ansible-test downloads (get-pip) from
a host this machine cannot reach. ansible-test runs it in an empty venv with pip
install options and the pinned packages; they are installed here with the pip
wheel that Python's own ensurepip carries (Debian's Python keeps it in /usr/share/python-wheels)."""

import ensurepip
import glob
import os
import sys
import tempfile
import zipfile

options = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
wheels = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
wheels += glob.glob("/usr/share/python-wheels/pip-*.whl")
if not wheels:
    sys.exit(f"pip_bootstrap: no pip wheel beside ensurepip or in /usr/share/python-wheels for {sys.executable}")
wheel = wheels[0]
with tempfile.TemporaryDirectory(prefix="pip-bootstrap-") as unpacked:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    sys.path.insert(0, unpacked)

    # Importable only after the path insert.
    from pip._internal.cli.main import main

    status = main(["install", *options])
sys.exit(status)

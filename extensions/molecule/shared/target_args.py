"""`docker run` flags of a Molecule target, from vars/target.yml (what shared/create.yml gives every
target), for the demo and the benchmarks, which start targets of their own without Molecule.

    python extensions/molecule/shared/target_args.py    one flag a line, for `mapfile` in a script
"""

from pathlib import Path

import yaml

TARGET = Path(__file__).resolve().parent / "vars" / "target.yml"


def target_args():
    """The flags, without the image and the command (the command is target_command())."""
    target = yaml.safe_load(TARGET.read_text())["target_container"]
    args = [f"--cap-add={cap}" for cap in target["capabilities"]]
    args += [f"--security-opt={opt}" for opt in target["security_opts"]]
    args += [f"--cgroupns={target['cgroupns_mode']}"]
    args += [f"--tmpfs={path}" for path in target["tmpfs"]]
    args += [f"--volume={volume}" for volume in target["volumes"]]
    return args


def target_command():
    return yaml.safe_load(TARGET.read_text())["target_container"]["command"]


if __name__ == "__main__":
    print("\n".join(target_args()))

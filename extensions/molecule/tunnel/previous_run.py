"""Before the upgrade: open alice's tunnel as the previous release's Host block has it, log a
run with an artifact through it, close the tunnel, and record the run for test_upgrade.py.

Usage: previous_run.py <the scenario's client dir>"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow

client = Path(sys.argv[1])
config = client / ".ssh" / "config"
block = config.read_text()
# The previous release forwarded to the name localhost, on port 5000.
assert "localhost:5000" in block, block
port = int((client / "local_ports").read_text().split()[0])
socket = client / "previous.sock"
ssh = ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", f"ControlPath={socket}"]
subprocess.run([*ssh, "-o", "ControlMaster=yes", "mlflowtunnel", "-fN"], check=True, stdin=subprocess.DEVNULL)
try:
    mlflow.set_tracking_uri(f"http://localhost:{port}")
    mlflow.set_experiment("before-the-upgrade")
    with tempfile.TemporaryDirectory() as scratch, mlflow.start_run() as run:
        artifact = Path(scratch) / "before.txt"
        artifact.write_text("logged through the previous release's tunnel\n")
        mlflow.log_param("release", "0668145")
        mlflow.log_artifact(str(artifact))
finally:
    subprocess.run([*ssh, "-O", "exit", "mlflowtunnel"], check=False, stdin=subprocess.DEVNULL)
(client / "previous_run.json").write_text(json.dumps({"run_id": run.info.run_id, "block": block}))
print(run.info.run_id)

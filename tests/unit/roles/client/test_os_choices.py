"""The client role's OS-specific choices, rendered with Ansible's own templating for a
pretend Debian PC and a pretend macOS PC (render.yml sets their facts by hand): the paths,
the launchd agent (read back with plistlib), the systemd unit (systemd-analyze verify) and
the ssh block (read back by `ssh -G`). macOS cannot run here; this is what proves its side."""

import json
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "client"
PCS = {
    "debian-pc": {"pc_os_family": "Debian", "pc_home": "/home/alice", "pc_service_mgr": "systemd"},
    "mac-pc": {"pc_os_family": "Darwin", "pc_home": "/Users/alice", "pc_service_mgr": "launchd"},
}
ROLE_VARS = {
    "mlflow_client_hostname": "gpu-lab-01.example.org",
    "mlflow_client_shell_alias": "mlflowserver-shell",
    "mlflow_client_identity_file": "~/.ssh/id_ed25519",
    "mlflow_client_ssh_options": {"UserKnownHostsFile": "~/.ssh/known_hosts_lab", "Compression": True},
}


def ansible_playbook():
    beside_python = Path(sys.executable).parent / "ansible-playbook"
    return str(beside_python) if beside_python.exists() else shutil.which("ansible-playbook")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One ansible-playbook run renders everything for both PCs; returns PC name -> output directory."""
    out = tmp_path_factory.mktemp("rendered")
    inventory = out / "inventory.json"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {name: {**local, **facts} for name, facts in PCS.items()}
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    result = subprocess.run(
        [
            ansible_playbook(),
            "-i",
            str(inventory),
            str(Path(__file__).with_name("render.yml")),
            "-e",
            json.dumps({"role_dir": str(ROLE), "out_dir": str(out), **ROLE_VARS}),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: out / name for name in PCS}


def paths(rendered, pc):
    return json.loads((rendered[pc] / "paths.json").read_text())


def test_debian_paths(rendered):
    assert paths(rendered, "debian-pc") | {"validate": None} == {
        "ssh_config": "/home/alice/.ssh/config",
        "profile": "/home/alice/.profile",
        "control_path": "/home/alice/.ssh/mlflow-cm/mlflowserver",
        "helper": "/home/alice/.local/bin/mlflow-tunnel",
        "service": "/home/alice/.config/systemd/user/mlflow-tunnel-mlflowserver.service",
        "credentials": "/home/alice/.mlflow/credentials",
        "env_file": "/home/alice/.mlflow/mlflowserver.env",
        "darwin": False,
        "validate": None,
    }


def test_macos_paths_use_launchd_and_zsh(rendered):
    assert paths(rendered, "mac-pc") | {"validate": None} == {
        "ssh_config": "/Users/alice/.ssh/config",
        # macOS logs in with zsh, which reads ~/.zprofile.
        "profile": "/Users/alice/.zprofile",
        "control_path": "/Users/alice/.ssh/mlflow-cm/mlflowserver",
        "helper": "/Users/alice/.local/bin/mlflow-tunnel",
        "service": "/Users/alice/Library/LaunchAgents/mlops.mlflow.tunnel.mlflowserver.plist",
        "credentials": "/Users/alice/.mlflow/credentials",
        "env_file": "/Users/alice/.mlflow/mlflowserver.env",
        "darwin": True,
        "validate": None,
    }


def test_launchd_agent_keeps_ssh_running(rendered):
    with (rendered["mac-pc"] / "mlflow-tunnel.plist").open("rb") as f:
        agent = plistlib.load(f)
    assert agent == {
        "Label": "mlops.mlflow.tunnel.mlflowserver",
        "ProgramArguments": [
            *("/usr/bin/ssh", "-F", "/Users/alice/.ssh/config"),
            *("-N", "-o", "BatchMode=yes", "mlflowserver"),
        ],
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 10,
    }
    # The helper finds the agent by the same label and place.
    helper = (ROLE / "files" / "mlflow-tunnel").read_text()
    assert 'label="mlops.mlflow.tunnel.$alias"' in helper
    assert 'plist="$HOME/Library/LaunchAgents/$label.plist"' in helper


def test_systemd_unit_passes_systemd_analyze_verify(rendered):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is missing: apt-get install systemd (the unit is then checked here)")
    unit = rendered["debian-pc"] / "mlflow-tunnel-mlflowserver.service"
    shutil.copyfile(rendered["debian-pc"] / "mlflow-tunnel.service", unit)
    verify = ["systemd-analyze", "verify", "--man=no", str(unit)]
    result = subprocess.run(verify, capture_output=True, text=True, check=False)
    # verify only warns about some mistakes (an unknown Restart= value), so no output is the pass.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    text = unit.read_text()
    assert "ExecStart=/usr/bin/ssh -F /home/alice/.ssh/config -N -o BatchMode=yes mlflowserver\n" in text
    assert "Restart=always\n" in text
    helper = (ROLE / "files" / "mlflow-tunnel").read_text()
    assert 'unit="mlflow-tunnel-$alias.service"' in helper


def ssh_g(config, alias):
    result = subprocess.run(["ssh", "-G", "-F", str(config), alias], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    options = {}
    for line in result.stdout.splitlines():
        name, value = line.split(" ", 1) if " " in line else (line, "")
        options.setdefault(name, []).append(value)
    return options


@pytest.mark.skipif(not shutil.which("ssh"), reason="the OpenSSH client is not installed")
def test_ssh_reads_the_tunnel_and_the_shell_alias_as_promised(rendered):
    block = rendered["debian-pc"] / "ssh_config_block"
    tunnel = ssh_g(block, "mlflowserver")
    assert tunnel["localforward"] == ["[127.0.0.1]:5000 [127.0.0.1]:500"]
    assert tunnel["controlmaster"] == ["auto"]
    assert tunnel["controlpath"] == ["/home/alice/.ssh/mlflow-cm/mlflowserver"]
    assert tunnel["exitonforwardfailure"] == ["yes"]
    assert tunnel["compression"] == ["yes"]
    assert tunnel["controlpersist"] == ["no"]
    shell = ssh_g(block, "mlflowserver-shell")
    # The shell alias reaches the same server with the same key, but never binds the port.
    assert shell["hostname"] == tunnel["hostname"] == ["gpu-lab-01.example.org"]
    assert shell["identityfile"] == tunnel["identityfile"]
    assert "localforward" not in shell
    assert "controlpath" not in shell
    assert shell["clearallforwardings"] == ["yes"]


def test_validation_reads_only_the_roles_block(rendered, tmp_path):
    """blockinfile's validate runs ssh -G on the role's block alone: a member's `Match exec`
    never runs (as root), and a bad option inside the block is refused."""
    validate = paths(rendered, "debian-pc")["validate"]
    block = (rendered["debian-pc"] / "ssh_config_block").read_text()
    witness = tmp_path / "ran"
    begin, end = "# BEGIN mlops.mlflow.client Host mlflowserver\n", "# END mlops.mlflow.client Host mlflowserver\n"
    good = tmp_path / "good"
    good.write_text(f'Match exec "touch {witness}"\n  User x\n{begin}{block}{end}Host *\n  ForwardAgent yes\n')
    # blockinfile splits the command the way shlex does and runs it without a shell.
    assert subprocess.run(shlex.split(validate % good), check=False).returncode == 0
    assert not witness.exists()
    bad = tmp_path / "bad"
    bad.write_text(f"{begin}{block}  NoSuchOption yes\n{end}")
    result = subprocess.run(shlex.split(validate % bad), capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "nosuchoption" in result.stderr.lower()

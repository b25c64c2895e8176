"""mlflow-tunnel (roles/client/files) with stand-ins for ssh, systemctl, launchctl, ss, lsof, curl and ps.

The real tunnel is proven in the Molecule scenario `tunnel`; these tests cover the helper's
decisions, including the macOS path (launchctl, lsof, no ss) that cannot run for real here,
under dash and under bash in POSIX mode (macOS's /bin/sh)."""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
HELPER = ROOT / "roles" / "client" / "files" / "mlflow-tunnel"
# What the helper uses besides the stand-ins (touch only for the stand-ins themselves).
TOOLS = ["awk", "sed", "grep", "id", "mktemp", "cat", "rm", "tr", "sleep", "head", "printf", "sh", "touch"]
SHELLS = [[shutil.which(s[0]), *s[1:]] for s in (["dash"], ["bash", "--posix"]) if shutil.which(s[0])]

# Each stand-in keeps its state as files in $STATE and logs its arguments to $STATE/calls.
STUBS = {
    "ssh": r"""
        echo "ssh $*" >> "$STATE/calls"
        case "$*" in
          *" -G "*)
            echo "hostname 192.0.2.7"
            echo "localforward [127.0.0.1]:5000 [127.0.0.1]:500"
            echo "controlpath $STATE/cm/lab"
            exit 0 ;;
          *"-O check"*)
            if [ -f "$STATE/master" ]; then echo "Master running (pid=$(cat "$STATE/master"))" >&2; exit 0; fi
            echo "Control socket connect($STATE/cm/lab): No such file or directory" >&2; exit 255 ;;
          *"-O exit"*)
            rm -f "$STATE/master" "$STATE/listening"; echo "Exit request sent." >&2; exit 0 ;;
          *"-fN"*)
            if [ -f "$STATE/refuse" ]; then echo "alice@192.0.2.7: Permission denied (publickey)." >&2; exit 255; fi
            if [ -f "$STATE/listening" ]; then
              echo "bind [127.0.0.1]:5000: Address already in use" >&2
              echo "Could not request local forwarding." >&2; exit 255
            fi
            echo 4242 > "$STATE/master"; echo "ssh -F config -fN lab" > "$STATE/args"; touch "$STATE/listening"
            exit 0 ;;
        esac
        exit 99
    """,
    "ps": r"""cat "$STATE/args" """,
    "ss": r"""
        echo "ss $*" >> "$STATE/calls"
        [ -f "$STATE/listening" ] || exit 0
        case "$1" in
          *p*) holder=$(cat "$STATE/holder" 2>/dev/null || echo ssh)
               echo "LISTEN 0 128 127.0.0.1:5000 0.0.0.0:* users:((\"$holder\",pid=77,fd=3))" ;;
          *) echo "LISTEN 0 128 127.0.0.1:5000 0.0.0.0:*" ;;
        esac
    """,
    "lsof": r"""
        echo "lsof $*" >> "$STATE/calls"
        [ -f "$STATE/listening" ] || exit 1
        printf 'p77\nc%s\n' "$(cat "$STATE/holder" 2>/dev/null || echo ssh)"
    """,
    "curl": r"""
        [ -f "$STATE/listening" ] && [ -f "$STATE/healthy" ] && printf OK
        exit 0
    """,
    "systemctl": r"""
        echo "systemctl $*" >> "$STATE/calls"
        case "$2" in
          start) echo 4343 > "$STATE/master"; echo "/usr/bin/ssh -F config -N -o BatchMode=yes lab" > "$STATE/args"
                 touch "$STATE/listening" "$STATE/unit-active" ;;
          stop) rm -f "$STATE/master" "$STATE/listening" "$STATE/unit-active" ;;
          is-active) if [ -f "$STATE/unit-active" ]; then echo active; else echo inactive; exit 3; fi ;;
        esac
    """,
    "launchctl": r"""
        echo "launchctl $*" >> "$STATE/calls"
        case "$1" in
          print) [ -f "$STATE/agent-loaded" ] || exit 113; echo "    state = running" ;;
          bootstrap) touch "$STATE/agent-loaded" ;;
          kickstart) echo 4444 > "$STATE/master"; echo "/usr/bin/ssh -F config -N -o BatchMode=yes lab" > "$STATE/args"
                     touch "$STATE/listening" ;;
          bootout) rm -f "$STATE/agent-loaded" "$STATE/master" "$STATE/listening" ;;
        esac
    """,
}

CONFIG = """\
Host gitlab
  User git
# BEGIN mlops.mlflow.client Host lab
Host lab
  HostName 192.0.2.7
# END mlops.mlflow.client Host lab
"""


class Member:
    """A home with an ssh config, a PATH of stand-ins, and the helper run as `mlflow-tunnel`."""

    def __init__(self, tmp_path, shell, without=()):
        self.home = tmp_path / "home"
        self.state = tmp_path / "state"
        self.bin = tmp_path / "bin"
        for d in (self.home / ".ssh", self.state / "cm", self.bin):
            d.mkdir(parents=True)
        self.config = self.home / ".ssh" / "config"
        self.config.write_text(CONFIG)
        for tool in TOOLS:
            os.symlink(shutil.which(tool), self.bin / tool)
        for name, body in STUBS.items():
            if name not in without:
                stub = self.bin / name
                stub.write_text("#!/bin/sh\n" + textwrap.dedent(body))
                stub.chmod(0o755)
        self.shell = shell

    def run(self, *args):
        env = {"HOME": str(self.home), "PATH": str(self.bin), "STATE": str(self.state), "LC_ALL": "C"}
        # Called by its installed name, as a member would.
        helper = self.bin / "mlflow-tunnel"
        if not helper.exists():
            shutil.copyfile(HELPER, helper)
        return subprocess.run(
            [*self.shell, str(helper), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def set(self, *flags):
        for flag in flags:
            (self.state / flag).touch()

    def calls(self):
        path = self.state / "calls"
        return path.read_text() if path.exists() else ""


@pytest.fixture(params=SHELLS, ids=lambda s: " ".join([Path(s[0]).name, *s[1:]]))
def member(request, tmp_path):
    return Member(tmp_path, request.param)


def test_open_status_close_reopen(member):
    member.set("healthy")
    assert member.run("status").returncode == 3

    opened = member.run("open")
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("opened: ssh tunnel lab (pid 4242), MLflow on http://127.0.0.1:5000\n")
    assert "MLflow answers on http://127.0.0.1:5000 (/health: OK)" in opened.stdout
    assert f"ssh -F {member.config} -fN lab" in member.calls()

    status = member.run("status", "lab")
    assert (status.returncode, status.stdout.splitlines()[0]) == (
        0,
        "running: ssh tunnel lab (pid 4242), MLflow on http://127.0.0.1:5000",
    )

    closed = member.run("close")
    assert closed.returncode == 0, closed.stderr
    assert closed.stdout == "closed: ssh tunnel lab (pid 4242); 127.0.0.1:5000 is free\n"
    assert f"ssh -F {member.config} -O exit lab" in member.calls()
    assert member.run("status").returncode == 3
    assert member.run("open").returncode == 0


def test_second_open_says_already_open_and_opens_nothing(member):
    member.run("open")
    again = member.run("open")
    assert (again.returncode, again.stdout) == (
        0,
        "already open: ssh tunnel lab (pid 4242), MLflow on http://127.0.0.1:5000\n",
    )
    assert member.calls().count("-fN") == 1


def test_status_says_when_mlflow_does_not_answer(member):
    member.run("open")
    status = member.run("status")
    assert status.returncode == 4
    assert "MLflow does not answer on http://127.0.0.1:5000/health" in status.stdout


def test_close_when_not_open_is_a_plain_no_op(member):
    closed = member.run("close")
    assert (closed.returncode, closed.stdout) == (0, "not open: no ssh tunnel for lab\n")
    assert "-O exit" not in member.calls()


def test_a_port_taken_by_another_program_is_named_and_ssh_not_run(member):
    member.set("listening")
    (member.state / "holder").write_text("python3")
    opened = member.run("open")
    assert opened.returncode == 1
    assert "cannot open: 127.0.0.1:5000 is taken by python3 (pid 77)" in opened.stderr
    assert "-fN" not in member.calls()
    status = member.run("status")
    assert status.returncode == 3
    assert "127.0.0.1:5000 is taken by python3 (pid 77), so the tunnel cannot open there" in status.stdout


def test_ssh_refusing_the_key_is_reported_with_its_own_message(member):
    member.set("refuse")
    opened = member.run("open")
    assert opened.returncode == 1
    assert "Permission denied (publickey)" in opened.stderr
    assert "ssh could not open the tunnel to lab (exit 255)" in opened.stderr


def test_an_interactive_session_holding_the_port_is_explained_and_not_cut_off(member):
    member.set("healthy", "listening")
    (member.state / "master").write_text("555\n")
    (member.state / "args").write_text("ssh lab\n")
    status = member.run("status")
    assert status.returncode == 0
    assert "interactive ssh session (pid 555: ssh lab)" in status.stdout
    assert "mlflow_client_shell_alias" in status.stdout
    opened = member.run("open")
    assert opened.stdout.startswith("already open: 127.0.0.1:5000 is forwarded by an interactive ssh session")
    closed = member.run("close")
    assert closed.returncode == 1
    assert "not closed: that would cut the session off; end it (exit) to free 127.0.0.1:5000" in closed.stderr
    assert "-O exit" not in member.calls()


def test_with_the_systemd_unit_open_and_close_go_through_it(member):
    unit = member.home / ".config" / "systemd" / "user" / "mlflow-tunnel-lab.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\n")
    member.set("healthy")
    opened = member.run("open")
    assert opened.returncode == 0, opened.stderr
    assert "systemctl --user start mlflow-tunnel-lab.service" in member.calls()
    assert opened.stdout.startswith("open: ssh tunnel lab (pid 4343) through the systemd service")
    status = member.run("status")
    assert status.stdout.startswith("always-on: systemd user unit mlflow-tunnel-lab.service is active")
    closed = member.run("close")
    assert closed.returncode == 0
    assert "systemctl --user stop mlflow-tunnel-lab.service" in member.calls()
    assert "-O exit" not in member.calls() and "-fN" not in member.calls()
    assert "systemctl --user disable --now mlflow-tunnel-lab.service" in closed.stdout


def test_on_macos_the_launchd_agent_and_lsof_are_used(member, tmp_path):
    mac = Member(tmp_path / "mac", member.shell, without=("systemctl", "ss"))
    plist = mac.home / "Library" / "LaunchAgents" / "mlops.mlflow.tunnel.lab.plist"
    plist.parent.mkdir(parents=True)
    plist.write_text("<plist/>\n")
    mac.set("healthy")
    opened = mac.run("open")
    assert opened.returncode == 0, opened.stderr
    uid = os.getuid()
    assert f"launchctl bootstrap gui/{uid} {plist}" in mac.calls()
    assert f"launchctl kickstart gui/{uid}/mlops.mlflow.tunnel.lab" in mac.calls()
    assert mac.run("status").stdout.startswith("always-on: launchd agent mlops.mlflow.tunnel.lab is running")
    closed = mac.run("close")
    assert closed.returncode == 0, closed.stderr
    assert f"launchctl bootout gui/{uid}/mlops.mlflow.tunnel.lab" in mac.calls()
    assert "lsof -nP -iTCP:5000 -sTCP:LISTEN" in mac.calls()
    assert "ss " not in mac.calls()


@pytest.mark.parametrize(
    ("config", "args", "rc", "message"),
    [
        ("Host x\n", ["open"], 1, "holds no tunnel written by mlops.mlflow.client; name the alias"),
        (
            CONFIG + "# BEGIN mlops.mlflow.client Host lab2\nHost lab2\n# END mlops.mlflow.client Host lab2\n",
            ["status"],
            1,
            "holds several tunnels (lab lab2); say which: mlflow-tunnel status <alias>",
        ),
        (CONFIG, ["open", "-oProxyCommand=x"], 1, "is not a Host alias"),
        (CONFIG, ["open", "lab\nx"], 1, "is not a Host alias"),
        (CONFIG, ["restart"], 2, "usage: mlflow-tunnel [-F ssh_config] open|status|close [alias]"),
        (CONFIG, [], 2, "usage:"),
    ],
)
def test_bad_calls_say_what_to_do(member, config, args, rc, message):
    member.config.write_text(config)
    result = member.run(*args)
    assert result.returncode == rc
    assert message in result.stderr
    assert "-fN" not in member.calls()


def test_dash_f_and_the_environment_choose_the_ssh_config(member):
    other = member.home / "other_config"
    other.write_text(CONFIG)
    member.run("-F", str(other), "open")
    assert f"ssh -F {other} -fN lab" in member.calls()


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed (apt-get install shellcheck)")
def test_helper_is_shellcheck_clean_as_posix_sh():
    result = subprocess.run(["shellcheck", "-s", "sh", str(HELPER)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout

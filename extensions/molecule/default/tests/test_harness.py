"""The harness: a systemd target that runs containers on its own Docker engine."""


def test_systemd_is_pid1_and_running(host):
    assert host.process.get(pid=1).comm == "systemd"
    assert host.run("systemctl is-system-running").stdout.strip() == "running"


def test_inner_engine_runs_a_local_image(host):
    result = host.run("docker run --rm local/busybox /bin/busybox echo hello-from-the-inner-engine")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "hello-from-the-inner-engine"


def test_compose_v2_is_there(host):
    version = host.run("docker compose version --short")
    assert version.rc == 0, version.stderr
    major, minor = (int(part) for part in version.stdout.strip().lstrip("v").split(".")[:2])
    assert (major, minor) >= (2, 18)

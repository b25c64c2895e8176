"""MLflow 3's job runner in Swarm mode (mlflow_server_job_execution: true): one replica, the
manager's, runs it and the periodic tasks; the worker's refuses job submission with MLflow's own
message. Each runner start re-queues every unfinished job in the shared database, a running one
too, so a restart of the worker's replica must re-run nothing. The control restarts the manager's
replica, whose new runner does run again the job it lost.

Every job MLflow 3.17.2 ships needs an LLM, so the job here is a test-only one (files/ci_jobs.py),
in an image made on each node from 3.17.2-full with that one file added: each execution adds a row
to a table of its own in MLflow's database. The module ends with the scenario's own settings again."""

import json
import shlex
import subprocess
import uuid
from functools import partial
from pathlib import Path

import pytest
import requests
from conftest import ADMIN, MANAGER, NODES, WORKER, on, psql, replica, replicas, site
from mlflow_client import wait_for as shared_wait_for

# Each check runs commands on the nodes: every 2 s.
wait_for = partial(shared_wait_for, interval=2)

MODULE = Path(__file__).resolve().parents[1] / "files" / "ci_jobs.py"
IMAGE = "mlops/mlflow:3.17.2-full-ci-jobs"
SETTINGS = {
    "mlflow_server_image": IMAGE,
    "mlflow_server_image_archive": "",
    "mlflow_server_job_execution": True,
    "mlflow_server_env": {
        "PYTHONPATH": "/opt/ci-jobs",
        "_MLFLOW_SUPPORTED_JOB_FUNCTION_LIST": "ci_jobs.ci_count",
        "_MLFLOW_ALLOWED_JOB_NAME_LIST": "ci_count",
    },
}
REFUSED = (
    "Mlflow server job execution feature is not enabled, please set environment variable "
    "'MLFLOW_SERVER_ENABLE_JOB_EXECUTION' to 'true' to enable it."
)
# MLflow's job runner and its periodic-task consumer, by their command lines.
RUNNER, PERIODIC = "mlflow.server.jobs._job_runner", "_periodic_tasks_consumer.huey_instance"
PROCESSES = (
    "import os\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        print(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())\n"
    "    except OSError:\n"
    "        pass\n"
)


def images(node):
    """The images of the MLflow replica containers running on a node."""
    return [on(node, f"docker inspect -f '{{{{.Config.Image}}}}' {container}").strip() for container in replicas(node)]


def healthy(relay):
    try:
        return requests.get(f"{relay.uri}/health", timeout=10).text.strip() == "OK"
    except requests.RequestException:
        return False


def runners(node):
    """(job runners, periodic-task consumers) among the processes of the node's replica."""
    lines = on(node, f"docker exec {replica(node)} python -c {shlex.quote(PROCESSES)}").splitlines()
    return sum(RUNNER in line for line in lines), sum(PERIODIC in line for line in lines)


def submit(relay, tag, seconds=0):
    return requests.post(
        f"{relay.uri}/ajax-api/3.0/jobs/",
        json={"job_name": "ci_count", "params": {"tag": tag, "seconds": seconds}},
        auth=ADMIN,
        timeout=30,
    )


def job(relay, job_id):
    answer = requests.get(f"{relay.uri}/ajax-api/3.0/jobs/{job_id}", auth=ADMIN, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def executions(tag):
    """The replicas (container hostnames) that ran the job with this tag, once per execution."""
    found = psql("SELECT count(*) FROM pg_tables WHERE tablename = 'ci_job_executions'")
    if found != [["1"]]:
        return []
    return [host for [host] in psql(f"SELECT host FROM ci_job_executions WHERE tag = '{tag}'")]


def restart(node, relays):
    """Kill the node's replica container; Swarm starts a new one. Returns when the new one answers."""
    old = replica(node)
    on(node, f"docker kill {old}")
    assert wait_for(lambda: replicas(node) not in ([], [old]), 120), replicas(node)
    assert wait_for(lambda: healthy(relays[node]), 180)


@pytest.fixture(scope="module")
def jobs(relays):
    for node in NODES:
        # Not through the node's /tmp: docker cp writes under a tmpfs mount, where the node does not look.
        on(node, "rm -rf /root/ci-jobs && mkdir /root/ci-jobs && { docker rm -f ci-jobs >/dev/null 2>&1 || true; }")
        subprocess.run(["docker", "cp", str(MODULE), f"{node}:/root/ci-jobs/ci_jobs.py"], check=True)
        on(
            node,
            "docker create --name ci-jobs mlops/mlflow:3.17.2-full >/dev/null"
            f" && docker cp /root/ci-jobs ci-jobs:/opt/ci-jobs && docker commit ci-jobs {IMAGE} >/dev/null"
            f" && docker rm ci-jobs >/dev/null && docker run --rm --entrypoint test {IMAGE} -s /opt/ci-jobs/ci_jobs.py",
        )
    deploy(relays, IMAGE, "-e", json.dumps(SETTINGS))
    yield relays
    deploy(relays, "mlops/mlflow:3.17.2-full")


def deploy(relays, image, *args):
    """site.yml with args, then wait until each node's replica runs the image and answers: the role
    waits for health, which the replicas being replaced answer too (the same MLflow version)."""
    run, out = site(*args)
    assert run.returncode == 0, out[-3000:]
    for node in NODES:
        assert wait_for(lambda node=node: images(node) == [image], 240), images(node)
        assert wait_for(lambda node=node: healthy(relays[node]), 180), node


def test_only_the_manager_s_replica_runs_the_job_runner_and_the_periodic_tasks(jobs):
    manager, worker = runners(MANAGER), runners(WORKER)
    assert manager[0] >= 1 and manager[1] >= 1, manager
    assert worker == (0, 0), worker
    # The control: the same count sees the web server's own processes in the worker's replica.
    assert "mlflow" in on(WORKER, f"docker exec {replica(WORKER)} python -c {shlex.quote(PROCESSES)}")


def test_the_worker_refuses_a_job_with_mlflow_s_message_and_the_manager_runs_it(jobs):
    refused = submit(jobs[WORKER], "refused")
    assert refused.status_code == 500 and refused.json()["detail"] == REFUSED, refused.text
    tag = uuid.uuid4().hex[:8]
    accepted = submit(jobs[MANAGER], tag)
    assert accepted.status_code == 200, accepted.text
    job_id = accepted.json()["job_id"]
    # Either replica reads the job from the shared database.
    assert wait_for(lambda: job(jobs[WORKER], job_id)["status"] == "SUCCEEDED", 120), job(jobs[WORKER], job_id)
    assert executions(tag) == [replica(MANAGER)[:12]]
    assert executions("refused") == []


def test_a_restart_of_the_worker_s_replica_re_runs_nothing(jobs):
    """A job runs for a minute in the manager's replica while the worker's replica is killed and
    started again; it runs once. The control: the same with the manager's replica, whose new
    runner re-queues the job it lost, runs it a second time."""
    tag = uuid.uuid4().hex[:8]
    job_id = submit(jobs[MANAGER], tag, seconds=60).json()["job_id"]
    assert wait_for(lambda: len(executions(tag)) == 1, 60)
    restart(WORKER, jobs)
    assert runners(WORKER) == (0, 0)
    assert job(jobs[MANAGER], job_id)["status"] in ("RUNNING", "SUCCEEDED")
    assert wait_for(lambda: job(jobs[MANAGER], job_id)["status"] == "SUCCEEDED", 120), job(jobs[MANAGER], job_id)
    assert len(executions(tag)) == 1, executions(tag)

    lost = uuid.uuid4().hex[:8]
    job_id = submit(jobs[MANAGER], lost, seconds=60).json()["job_id"]
    assert wait_for(lambda: len(executions(lost)) == 1, 60)
    restart(MANAGER, jobs)
    assert wait_for(lambda: len(executions(lost)) == 2, 120), executions(lost)
    assert len(set(executions(lost))) == 2  # two replicas: the killed one and its successor
    runner, periodic = runners(MANAGER)
    assert runner >= 1 and periodic >= 1

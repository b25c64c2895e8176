"""A test-only job for MLflow's job runner (the swarm scenario's test_2_jobs.py), which MLflow
imports from PYTHONPATH when _MLFLOW_SUPPORTED_JOB_FUNCTION_LIST and _MLFLOW_ALLOWED_JOB_NAME_LIST
name it. Every job MLflow 3.17.2 ships needs an LLM. Each execution adds a row to a table of its
own in MLflow's database, through the server's own connection settings, and then waits."""

import os
import socket
import time

import sqlalchemy
from mlflow.server.jobs import job


@job(name="ci_count", max_workers=1)
def ci_count(tag: str, seconds: float = 0):
    engine = sqlalchemy.create_engine(os.environ["MLFLOW_BACKEND_STORE_URI"])
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE IF NOT EXISTS ci_job_executions (tag TEXT, host TEXT)"))
            connection.execute(
                sqlalchemy.text("INSERT INTO ci_job_executions VALUES (:tag, :host)"),
                {"tag": tag, "host": socket.gethostname()},
            )
    finally:
        engine.dispose()
    time.sleep(seconds)
    return {"tag": tag, "host": socket.gethostname()}

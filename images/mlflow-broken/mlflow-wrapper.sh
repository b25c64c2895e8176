#!/bin/sh
# Every mlflow command works, except `mlflow db upgrade`, which fails.
if [ "$1" = "db" ] && [ "$2" = "upgrade" ]; then
  echo "mlflow-broken: 'mlflow db upgrade' fails on purpose (lifecycle test image)" >&2
  exit 1
fi
exec /opt/mlflow/bin/mlflow.real "$@"

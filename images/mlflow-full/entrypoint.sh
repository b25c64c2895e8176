#!/bin/sh
# Entry point of mlops/mlflow:<version>-full: runs the command as given, after reading
# secrets from files. For each VAR below, VAR_FILE names a file whose first line becomes
# VAR, so the value stays out of `docker inspect` and every command line. MLflow reads
# the Flask secret key from the environment only.
set -eu
for var in MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_BACKEND_STORE_URI; do
  eval "file=\${${var}_FILE:-}"
  [ -n "$file" ] || continue
  eval "already=\${${var}+set}"
  if [ -n "$already" ]; then
    echo "mlflow-entrypoint: both $var and ${var}_FILE are set; give one" >&2
    exit 1
  fi
  [ -r "$file" ] || { echo "mlflow-entrypoint: cannot read ${var}_FILE ($file)" >&2; exit 1; }
  value=$(head -n 1 "$file" | tr -d '\r')
  [ -n "$value" ] || { echo "mlflow-entrypoint: ${var}_FILE ($file) is empty" >&2; exit 1; }
  export "$var=$value"
  unset "${var}_FILE"
done
exec "$@"

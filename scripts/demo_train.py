"""The demo's sample training run, logged to MLflow through the SSH tunnel.

Fits a linear model to scikit-learn's bundled diabetes data (no download) for a
few epochs and logs its parameters, a loss curve per epoch, the test predictions
and the model. The server comes from MLFLOW_TRACKING_URI (http://127.0.0.1:<port>)."""

import os
import sys
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import SGDRegressor
from sklearn.metrics import r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

PARAMS = {"learning_rate": "invscaling", "eta0": 0.01, "alpha": 0.0001, "epochs": 30, "random_state": 42}


def main():
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        sys.exit("Set MLFLOW_TRACKING_URI, e.g. http://127.0.0.1:5000 with the tunnel open.")
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.25, random_state=42)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = SGDRegressor(
        learning_rate=PARAMS["learning_rate"],
        eta0=PARAMS["eta0"],
        alpha=PARAMS["alpha"],
        random_state=PARAMS["random_state"],
    )

    experiment = mlflow.set_experiment("demo-diabetes")
    with mlflow.start_run(run_name="sgd-regressor") as run:
        mlflow.log_params(PARAMS)
        for epoch in range(PARAMS["epochs"]):
            model.partial_fit(x_train, y_train)
            mlflow.log_metrics(
                {
                    "rmse_train": root_mean_squared_error(y_train, model.predict(x_train)),
                    "rmse_test": root_mean_squared_error(y_test, model.predict(x_test)),
                },
                step=epoch,
            )
        mlflow.log_metric("r2_test", r2_score(y_test, model.predict(x_test)))
        with tempfile.TemporaryDirectory() as scratch:
            predictions = Path(scratch) / "predictions.csv"
            pd.DataFrame({"actual": y_test, "predicted": model.predict(x_test)}).to_csv(predictions, index=False)
            mlflow.log_artifact(str(predictions))
        mlflow.sklearn.log_model(model, name="model", input_example=x_test[:3])

    print(f"run {run.info.run_id} logged to {uri}")
    print(f"open {uri}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}")


if __name__ == "__main__":
    main()

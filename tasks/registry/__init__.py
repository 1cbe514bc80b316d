"""MLflow: training and publish runs, registered versions, the ``champion`` alias, the served model."""

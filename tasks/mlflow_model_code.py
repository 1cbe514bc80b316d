"""MLflow "model from code": the pyfunc that serves a latentfeed encoder.

MLflow copies this file into each logged model and runs it when the model is loaded; it is not
imported by latentfeed itself. ``ae_models`` travels with the model as a code path, so loading needs
only mlflow, torch, numpy and pandas.
"""
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class LatentEncoder(PythonModel):
    """predict(raw feature columns) -> latent_0..latent_{k-1}, with the fitted preprocessing applied."""

    def load_context(self, context):
        from ae_models import AutoencoderReducer

        self.reducer = AutoencoderReducer.load(context.artifacts["reducer"])

    def predict(self, context, model_input, params=None):
        codes = self.reducer.transform(model_input)
        return pd.DataFrame(codes, columns=[f"latent_{i}" for i in range(codes.shape[1])],
                            index=getattr(model_input, "index", None))


mlflow.models.set_model(LatentEncoder())

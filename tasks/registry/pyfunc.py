"""MLflow "model from code": the pyfunc that serves a latentfeed encoder.

MLflow copies this file into each logged model and runs it when the model is loaded; it is not
imported by latentfeed itself. ``ae_models`` travels with the model as a code path, so loading needs
only mlflow, torch, numpy and pandas.
"""
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class LatentEncoder(PythonModel):
    """predict(raw feature columns) -> what a feature-table row holds: the dataset's key columns when
    they are sent, latent_0..latent_{k-1}, anomaly_score, is_anomaly and, for a model
    trained with code_bits, code (the packed binary code, bytes), with the
    fitted preprocessing applied (nulls where the model allows them; ordinary pandas dtypes)."""

    def load_context(self, context):
        from ae_models import AutoencoderReducer

        self.reducer = AutoencoderReducer.load(context.artifacts["reducer"])
        self.keys = list((context.model_config or {}).get("keys", []))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        codes, scores = self.reducer.transform_and_anomaly_score(model_input)
        index = getattr(model_input, "index", None)
        sent = [k for k in self.keys if k in getattr(model_input, "columns", [])]
        out = pd.DataFrame({k: model_input[k] for k in sent}, index=index)
        out[list(self.reducer.get_feature_names_out())] = pd.DataFrame(codes, index=index)
        out["anomaly_score"] = scores
        out["is_anomaly"] = scores > np.float32(self.reducer.threshold_)
        if self.reducer.hasher_ is not None:
            out["code"] = [row.tobytes() for row in self.reducer.hash_latents(codes)]
        return out


mlflow.models.set_model(LatentEncoder())

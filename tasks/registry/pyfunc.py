"""MLflow "model from code": the pyfunc that serves a latentfeed encoder.

MLflow copies this file into each logged model and runs it when the model is loaded; it is not
imported by latentfeed itself. ``ae_models`` travels with the model as a code path, so loading needs
only mlflow, torch, scikit-learn, SciPy, NumPy and pandas.

Serving holds validation's contract. A value the pipeline would refuse is refused here with an
``MlflowException`` (``INVALID_PARAMETER_VALUE``) whose message names the column and the reason, so
``mlflow models serve`` answers HTTP 400 with both in its ``message``: a null only in a column this
version was trained with nulls in; a real column takes numbers (not text, not booleans), a binary
column 0/1 as numbers or booleans; text is never converted to a number.
"""
import json
import numbers
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

# Batches up to this many rows run on one torch thread: a second one gains nothing on them and, when
# other processes hold the cores, multiplies a small call's latency (bench/serving.py).
ONE_THREAD_ROWS = 16_384
# A frame whose feature columns are all NumPy numbers, but which holds other columns too (a text key),
# is converted whole when it has at most this many rows: one call instead of one per column.
WHOLE_FRAME_ROWS = 1024
REGISTERED_VERSION = "registered_version.json"  # at the model's root: its version number, once registered
_GOOD_OBJECTS = {"floating", "integer", "mixed-integer-float", "decimal", "empty"}  # pandas' infer_dtype


def refusal(message: str) -> MlflowException:
    """What predict raises for input the model must not score: HTTP 400 with ``message``."""
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class LatentEncoder(PythonModel):
    """predict(raw feature columns) -> what a feature-table row holds: the dataset's key columns when
    they are sent, latent_0..latent_{k-1}, anomaly_score, is_anomaly and, for a model
    trained with code_bits, code (the packed binary code, bytes), with the
    fitted preprocessing applied (nulls where the model allows them; ordinary pandas dtypes)."""

    def load_context(self, context):
        from ae_models import AutoencoderReducer
        from ae_models.preprocess import NULL

        self.reducer = r = AutoencoderReducer.load(context.artifacts["reducer"])
        self.keys = list((context.model_config or {}).get("keys", []))
        p = r.preprocessor_
        self.groups = {**{c: "real" for c in p.real}, **{c: "binary" for c in p.binary},
                       **{c: "categorical" for c in p.categorical}}
        self.numeric = list(p.numeric)  # real, then binary: the order of the checked matrix
        self.n_real = len(p.real)
        self.categorical = list(p.categorical)
        self.features = [*self.numeric, *self.categorical]
        self.nullable = {*p.nullable, *(c for c in p.categorical if NULL in p.vocab[c])}
        self.latents = list(r.get_feature_names_out())
        self.threshold = np.float32(r.threshold_)
        self.maps, self.version = _spaces(context)

    # ------------------------------------------------------------------------------ the contract
    def _refuse_nulls(self, name: str, missing: np.ndarray) -> None:
        if name not in self.nullable and missing.any():
            allowed = f"only in {sorted(self.nullable)}" if self.nullable else "in none of its columns"
            raise refusal(f"column {name!r} has {int(missing.sum())} null value(s), first at row "
                          f"{int(missing.argmax())}: this model version was trained with no nulls in it, and "
                          f"takes nulls {allowed}")

    def _check(self, values: np.ndarray) -> None:
        """Refuse nulls where training had none and binary values other than 0 and 1, over the whole
        (n, real + binary) matrix at once, naming the first column at fault."""
        missing = np.isnan(values)
        if missing.any():
            for j in np.flatnonzero(missing.any(0)):
                self._refuse_nulls(self.numeric[j], missing[:, j])
        r = self.n_real
        bad = (values[:, r:] != 0) & (values[:, r:] != 1) & ~missing[:, r:]
        if bad.any():
            j = int(bad.any(0).argmax())
            wrong = values[bad[:, j], r + j]
            raise refusal(f"binary column {self.numeric[r + j]!r} has {len(wrong)} value(s) other than 0 and 1, "
                          f"e.g. {wrong[:3].tolist()}, first at row {int(bad[:, j].argmax())}; it takes 0/1 "
                          "or booleans")

    def _numbers(self, name: str, column: pd.Series) -> np.ndarray:
        """A real or binary column as float64, NaN where missing; text, and booleans in a real column,
        refused. Types decide (as validation's do): nothing is parsed from text."""
        binary = self.groups[name] == "binary"
        dtype = column.dtype
        kind = getattr(dtype, "kind", "O") or "O"
        if kind in ("i", "u", "f") or (kind == "b" and binary):
            if isinstance(dtype, np.dtype):
                return column.to_numpy(np.float64)
            return column.to_numpy(np.float64, na_value=np.nan)  # pandas' nullable Int64, Float64, boolean
        if kind == "b":
            raise refusal(f"real column {name!r} holds booleans (dtype {dtype}); send numbers")
        if isinstance(dtype, np.dtype) and kind != "O":  # dates, durations, NumPy text
            raise refusal(f"{self.groups[name]} column {name!r} has dtype {dtype}; send numbers")
        if isinstance(dtype, pd.CategoricalDtype):
            raise refusal(f"{self.groups[name]} column {name!r} has dtype category; send numbers")
        values = column.to_numpy(object)
        if pd.api.types.infer_dtype(values, skipna=True) in _GOOD_OBJECTS:
            return _floats(values)
        out = np.empty(len(values), np.float64)
        for i, v in enumerate(values):  # text or a mix: name the first value that is not a number
            if _is_missing(v):
                out[i] = np.nan
            elif isinstance(v, (bool, np.bool_)) and not binary:
                raise refusal(f"real column {name!r} holds booleans, e.g. {v!r} at row {i}; send numbers")
            elif isinstance(v, numbers.Number) and not isinstance(v, complex):
                out[i] = float(v)
            else:
                what = "text" if isinstance(v, (str, bytes)) else f"a {type(v).__name__}"
                raise refusal(f"{self.groups[name]} column {name!r} holds {what}, e.g. {v!r} at row {i}: it takes "
                              "numbers, and text is not converted to numbers; send the value as a number")
        return out

    def columns(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The model's columns of ``frame`` as arrays (what the estimator reads), each checked."""
        names = frame.columns.tolist()
        position = {name: i for i, name in enumerate(names)}
        if len(position) != len(names):
            raise refusal(f"column(s) {sorted({str(c) for c in names if names.count(c) > 1})} are sent more than once")
        missing = [c for c in self.features if c not in position]
        if missing:
            raise refusal(f"input lacks column(s) {missing}; this model reads {self.features}")
        dtypes = frame.dtypes.tolist()
        plain = [isinstance(t, np.dtype) and t.kind in "iufb" for t in dtypes]  # NumPy numbers and booleans
        where = [position[name] for name in self.numeric]
        if all(plain[i] for i in where) and (all(plain) or len(frame) <= WHOLE_FRAME_ROWS):
            # the common case: one conversion of the whole frame, not one per column
            for name, i in zip(self.numeric, where):
                if dtypes[i].kind == "b" and self.groups[name] == "real":
                    raise refusal(f"real column {name!r} holds booleans (dtype bool); send numbers")
            whole = frame.to_numpy(np.float64) if all(plain) else frame.to_numpy()  # object when mixed
            values = whole[:, where].astype(np.float64, copy=False)
        else:
            values = np.empty((len(frame), len(self.numeric)))
            for j, name in enumerate(self.numeric):
                values[:, j] = self._numbers(name, frame[name])
        self._check(values)
        out = {name: values[:, j] for j, name in enumerate(self.numeric)}
        for name in self.categorical:
            values = frame[name].to_numpy(object)
            self._refuse_nulls(name, pd.isna(values))
            out[name] = values
        return out

    # ------------------------------------------------------------------------------ predict
    def _backward(self, space):
        """The map to version ``space``'s latent space (None: this version's own), or a refusal naming both."""
        if space is None or space == self.version:
            return None
        space = int(space)
        if space in self.maps:
            return self.maps[space]
        own = f"model version {self.version}" if self.version is not None else "this model version"
        if self.version is not None and space > self.version:
            raise refusal(f"{own} cannot answer in the latent space of version {space}: maps go backward only")
        raise refusal(f"{own} has no map to version {space}'s latent space; it maps to "
                      f"{sorted(self.maps, reverse=True) or 'no earlier version'}")

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        space = (params or {}).get("compatible_with")
        backward = self._backward(space)
        frame = model_input
        if not isinstance(frame, pd.DataFrame):
            frame = frame.to_pandas() if hasattr(frame, "to_pandas") else pd.DataFrame(frame)
        columns = self.columns(frame)
        threads = torch.get_num_threads()
        one = len(frame) <= ONE_THREAD_ROWS and threads > 1
        if one:
            torch.set_num_threads(1)
        try:
            codes, scores = self.reducer.transform_and_anomaly_score(columns)
        except ValueError as e:  # what the preprocessing refuses: an infinite value, or one beyond float32
            raise refusal(str(e)) from None
        finally:
            if one:
                torch.set_num_threads(threads)
        data = {k: frame[k].array for k in self.keys if k in frame.columns}  # as sent, dtype kept
        if backward is None:
            data.update(zip(self.latents, codes.T))
        else:
            from ae_models.config import latent_names

            data.update(zip(latent_names(backward.target_dim), backward.apply(codes).T))
        if space is not None:
            data["latent_space"] = np.full(len(codes), int(space), np.int32)
        data["anomaly_score"] = scores
        data["is_anomaly"] = scores > self.threshold
        if self.reducer.hasher_ is not None:
            data["code"] = [row.tobytes() for row in self.reducer.hash_latents(codes)]
        return pd.DataFrame(data, index=frame.index, copy=False)


def _spaces(context) -> tuple[dict, "int | None"]:
    """The version's backward maps (keyed by the version each reaches), read once at load, and its own
    number: both absent from versions registered before maps existed; the number is written beside the
    model as it is registered."""
    from ae_models import LatentMap

    maps = context.artifacts.get("backward_maps")
    known = ({int(v): LatentMap.from_dict(d) for v, d in json.loads(Path(maps).read_text())["maps"].items()}
             if maps else {})
    version = Path(context.artifacts["reducer"]).parents[1] / REGISTERED_VERSION
    return known, (json.loads(version.read_text())["model_version"] if version.exists() else None)


def _is_missing(v) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


def _floats(values: np.ndarray) -> np.ndarray:
    """An object array of numbers and missing values -> float64, NaN where missing."""
    missing = pd.isna(values)
    if not missing.any():
        return values.astype(np.float64)
    out = np.full(len(values), np.nan)
    out[~missing] = values[~missing].astype(np.float64)
    return out


mlflow.models.set_model(LatentEncoder())

"""How latents are stored in the feature table: their columns, their dtype, and int8 quantisation.

``[features].latent_dtype`` (a table keeps the one it began with, recorded as a table property; a new
table whose config leaves it out is int8):
- ``float32``: the code as computed.
- ``float16``: the code rounded to float16 precision (about 3 significant digits), stored in float32
  columns (Delta Lake has no half-precision type); rounded floats compress to about 60 %.
- ``int8``: each latent column quantised to 255 levels over the range the model's codes took on its
  training rows (plus 5 % either side; values beyond it saturate): ``latent = offset + scale * q``.
  The offsets and scales come from the model version itself (``latent_range_``, saved with it in
  MLflow) and are written beside the table, so readers need neither MLflow nor the model.

With ``float16`` and ``int8`` the anomaly score (``anomaly_score``, a float32 column) is stored
rounded to bfloat16 precision (about 3 significant digits; ``is_anomaly`` is decided before the
rounding): a float32 score would otherwise take as many bytes as all the int8 latents together.

With ``[features].code_bits`` the model version's binary code of each row is stored too, packed in a
binary ``code`` column of ``code_bits / 8`` bytes (see ``ae_models.hashing``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from ae_models.config import LATENT_PREFIX, latent_names

from tasks.store.objects import Storage

CODE = "code"  # the column of the binary codes
LEVELS = 127  # int8 codes run from -127 to 127 (-128 is left unused, so the grid is symmetric)
# A new table's latent dtype when the config leaves it out: on the real tables of bench/real_data.py above
# 8 bytes a raw row, an int8 day takes 0.06-0.45x its raw parquet's bytes, a float32 one 0.12-1.6x (2-4x
# the int8 bytes), and readers get float32 from both.
NEW_TABLE_DTYPE = "int8"


def latent_columns(columns: list[str]) -> list[str]:
    """The latent columns of a frame, in order."""
    names = [c for c in columns if c.startswith(LATENT_PREFIX) and c[len(LATENT_PREFIX):].isdigit()]
    return sorted(names, key=lambda c: int(c[len(LATENT_PREFIX):]))


@dataclass(frozen=True)
class Quantisation:
    """Per-column affine int8 grid: ``latent = offset + scale * q`` with q in [-127, 127]."""

    offset: list[float]
    scale: list[float]

    @classmethod
    def of_range(cls, low: np.ndarray, high: np.ndarray) -> "Quantisation":
        width = np.maximum(np.asarray(high, np.float64) - np.asarray(low, np.float64), 1e-12)
        return cls(offset=((np.asarray(high) + np.asarray(low)) / 2).tolist(), scale=(width / (2 * LEVELS)).tolist())

    def quantise(self, codes: np.ndarray) -> np.ndarray:
        q = np.rint((codes - np.asarray(self.offset, np.float32)) / np.asarray(self.scale, np.float32))
        return np.clip(q, -LEVELS, LEVELS).astype(np.int8)

    def dequantise(self, names: list[str]) -> list[pl.Expr]:
        """Expressions that turn the stored int8 columns back into float32 latents."""
        return [(pl.col(c).cast(pl.Float32) * np.float32(s) + np.float32(o)).alias(c)
                for c, o, s in zip(names, self.offset, self.scale)]


def store(codes: np.ndarray, latent_dtype: str, quantisation: Quantisation | None) -> dict[str, pl.Series]:
    """The latent columns as stored for ``latent_dtype``."""
    names = latent_names(codes.shape[1])
    if latent_dtype == "int8":
        q = quantisation.quantise(codes)
        return {n: pl.Series(q[:, i], dtype=pl.Int8) for i, n in enumerate(names)}
    if latent_dtype == "float16":
        codes = codes.astype(np.float16).astype(np.float32)
    return {n: pl.Series(codes[:, i], dtype=pl.Float32) for i, n in enumerate(names)}


def store_score(scores: np.ndarray, latent_dtype: str) -> pl.Series:
    """The anomaly score as stored: float32, rounded to bfloat16 precision in the compact dtypes."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if latent_dtype != "float32":
        scores = ((scores.view(np.uint32) + np.uint32(0x8000)) & np.uint32(0xFFFF0000)).view(np.float32)
    return pl.Series(scores, dtype=pl.Float32)


def store_code(packed: np.ndarray) -> pl.Series:
    """Packed codes (n, bytes) uint8 as the binary ``code`` column (no copy through Python objects)."""
    n, width = packed.shape
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(np.ascontiguousarray(packed))])
    return pl.Series(CODE, fixed.cast(pa.large_binary()))


def code_matrix(codes: pl.Series) -> np.ndarray:
    """The ``code`` column back as packed codes (n, bytes) uint8; every row must hold a code."""
    if codes.null_count():
        raise ValueError(f"{codes.null_count()} row(s) have no code")
    if not len(codes):
        return np.zeros((0, 0), np.uint8)
    arr = codes.to_arrow()
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    width = len(arr[0].as_py())
    fixed = arr.cast(pa.binary(width))  # one width for all rows, or an error
    return np.frombuffer(fixed.buffers()[1], np.uint8, len(fixed) * width, fixed.offset * width).reshape(-1, width)


def _sidecar(state: Storage, model_version: int) -> str:
    return state.join("quantisation", f"model_version={int(model_version)}.json")


def write_quantisation(state: Storage, model_version: int, quantisation: Quantisation) -> str:
    """Record a version's int8 grid in the table's state folder (before its first rows are written)."""
    uri = _sidecar(state, model_version)
    state.write_text(uri, json.dumps({"model_version": int(model_version), "offset": quantisation.offset,
                                                  "scale": quantisation.scale}, indent=1))
    return uri


def read_quantisation(state: Storage, model_version: int) -> Quantisation:
    uri = _sidecar(state, model_version)
    try:
        d = json.loads(state.read_text(uri))
    except FileNotFoundError:
        raise FileNotFoundError(f"model version {model_version} is stored as int8 but its quantisation grid "
                                f"{uri} is missing; publish a day of it again to rewrite it") from None
    return Quantisation(offset=d["offset"], scale=d["scale"])

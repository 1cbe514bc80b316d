"""Column-group preprocessing fitted with the model and stored beside it as JSON.

Frames are read by column name through ``frame[name]`` (polars and pandas both allow it), arrays by
position, so this module needs nothing beyond NumPy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

UNSEEN = "<unseen>"  # slot 0 of every vocabulary: categories not seen in fit land here


def is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and not isinstance(X, np.ndarray)


def column_names(X: Any) -> list[str]:
    if is_frame(X):
        return [str(c) for c in X.columns]
    return [f"x{i}" for i in range(np.asarray(X).shape[1])]


def _columns(X: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Map each name to a 1-D array of that column."""
    if is_frame(X):
        return {n: np.asarray(X[n]) for n in names}
    arr = np.asarray(X)
    return {n: arr[:, int(n[1:])] for n in names}


def _numeric_matrix(cols: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Stack the named columns into one float32 (n, len(names)) matrix; name the first bad column."""
    n = len(next(iter(cols.values()))) if cols else 0
    out = np.empty((n, len(names)), np.float32, order="F")  # column writes are contiguous
    for j, name in enumerate(names):
        try:
            out[:, j] = cols[name]
        except (TypeError, ValueError):
            raise ValueError(f"column {name!r} holds non-numeric values (dtype {cols[name].dtype}); "
                             "convert it to numbers or declare it categorical") from None
    finite = np.isfinite(out)
    if not finite.all():
        j = int((~finite).any(0).argmax())
        bad = ~finite[:, j]
        raise ValueError(f"column {names[j]!r} has {int(bad.sum())} NaN/inf/null value(s), first at row "
                         f"{int(np.argmax(bad))}; drop or impute them before fitting or encoding")
    return out


@dataclass
class Preprocessor:
    """Turns a frame or array into the model's float32 matrix: [real | binary | one-hot cats]."""

    real: list[str]
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    scale: str = "standard"  # standard | none
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def infer(cls, X: Any, real: Sequence[str] | None, binary: Sequence[str] | None,
              categorical: Sequence[str] | None, scale: str) -> "Preprocessor":
        """Column groups: what was named, else numeric -> real and anything else -> categorical."""
        names = column_names(X)
        if scale not in ("standard", "none"):
            raise ValueError(f"scale={scale!r} is unknown; choose 'standard' or 'none'")
        if real is None and binary is None and categorical is None:
            cols = _columns(X, names)
            real = [n for n in names if cols[n].dtype.kind in "biuf"]
            categorical = [n for n in names if n not in real]
        groups = {"real": list(real or []), "binary": list(binary or []), "categorical": list(categorical or [])}
        missing = [n for g in groups.values() for n in g if n not in names]
        if missing:
            raise ValueError(f"column(s) {missing} not in the input, which has {names[:10]}"
                             f"{'...' if len(names) > 10 else ''}")
        if not any(groups.values()):
            raise ValueError("no feature columns: name real, binary or categorical columns")
        return cls(real=groups["real"], binary=groups["binary"], categorical=groups["categorical"], scale=scale)

    @property
    def columns(self) -> list[str]:
        return [*self.real, *self.binary, *self.categorical]

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.vocab[c]) for c in self.categorical)

    def fit(self, X: Any) -> "Preprocessor":
        cols = self._read(X)
        if self.real:
            real = _numeric_matrix(cols, self.real).astype(np.float64)
            std = real.std(0)
            self.mean = real.mean(0).tolist() if self.scale == "standard" else [0.0] * len(self.real)
            self.std = np.where(std > 1e-12, std, 1.0).tolist() if self.scale == "standard" else [1.0] * len(self.real)
        self.vocab = {n: [UNSEEN, *sorted({str(v) for v in cols[n]})] for n in self.categorical}
        return self

    def _read(self, X: Any) -> dict[str, np.ndarray]:
        if is_frame(X):
            missing = [n for n in self.columns if n not in column_names(X)]
            if missing:
                raise ValueError(f"input lacks column(s) {missing}; the model was fitted on {self.columns}")
        else:
            arr = np.asarray(X)
            if arr.ndim != 2 or arr.shape[1] != len(self.columns):
                raise ValueError(f"input has shape {arr.shape}; expected (n_rows, {len(self.columns)}) "
                                 f"columns in the order {self.columns[:10]}")
        return _columns(X, self.columns)

    def transform(self, X: Any) -> np.ndarray:
        """Frame or array -> (n, d) float32, checking every value it reads."""
        cols = self._read(X)
        parts: list[np.ndarray] = []
        if self.real:
            real = _numeric_matrix(cols, self.real)
            real -= np.asarray(self.mean, np.float32)
            real /= np.asarray(self.std, np.float32)
            parts.append(real)
        if self.binary:
            binary = _numeric_matrix(cols, self.binary)
            bad = (binary != 0) & (binary != 1)
            if bad.any():
                j = int(bad.any(0).argmax())
                vals = binary[bad[:, j], j]
                raise ValueError(f"binary column {self.binary[j]!r} has {len(vals)} value(s) outside {{0, 1}}, "
                                 f"e.g. {vals[:3].tolist()}; declare it real or fix the values")
            parts.append(binary)
        for n in self.categorical:
            index = {c: i for i, c in enumerate(self.vocab[n])}
            codes = np.array([index.get(str(v), 0) for v in cols[n]])
            parts.append(np.eye(len(index), dtype=np.float32)[codes])
        return np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts, 1))

    def inverse(self, M: np.ndarray) -> np.ndarray:
        """Activated model output (n, d) -> input space: real values, binary probabilities, labels."""
        r, b = len(self.real), len(self.real) + len(self.binary)
        real = M[:, :r] * np.asarray(self.std) + np.asarray(self.mean) if r else M[:, :0]
        out = [real, M[:, r:b]]
        start = b
        labels = []
        for n in self.categorical:
            card = len(self.vocab[n])
            labels.append(np.asarray(self.vocab[n], dtype=object)[M[:, start:start + card].argmax(1)][:, None])
            start += card
        if labels:
            return np.concatenate([np.concatenate(out, 1).astype(object), *labels], 1)
        return np.concatenate(out, 1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(**d)

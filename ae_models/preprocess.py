"""Column-group preprocessing fitted with the model and stored beside it as JSON.

Frames are read by column name through ``frame[name]`` (polars and pandas both allow it), arrays by
position, so this module needs nothing beyond NumPy. Whether fit saw names is recorded (``named``),
never read off the names' shape: a table's columns may well be called x0, x1 ... A mapping of column
name to 1-D array reads as a frame: the fast path of a caller that already holds its columns as arrays
(the served model), with no frame to build.

Missing values are first class: a null (or NaN) in a real or binary column stays NaN in the matrix
the model receives (the model imputes it, sees a missing-indicator, and leaves it out of the loss);
a null category is a level of its own.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

UNSEEN = "<unseen>"  # slot 0 of every vocabulary: categories not seen in fit land here
NULL = "<null>"  # the level of a missing category, when fit saw one
SCALES = ("auto", "standard", "shared", "none")
_SCALE_SAMPLE = 100_000  # rows the scale decision and its quantiles are read from
SHARED_SPREAD_RATIO = 10.0  # auto: spreads of the non-sparse real columns within this factor -> one unit


def is_frame(X: Any) -> bool:
    """A polars or pandas frame, or a mapping of column name to 1-D array."""
    return isinstance(X, Mapping) or (hasattr(X, "columns") and not isinstance(X, np.ndarray))


def _labels(X: Any) -> list[Any]:
    """A frame's column labels, in its order (a mapping's keys)."""
    return list(X) if isinstance(X, Mapping) else list(X.columns)


def n_rows(X: Any) -> int:
    """Rows of a frame, mapping of columns or array."""
    if isinstance(X, Mapping):
        return len(next(iter(X.values()))) if X else 0
    return len(X)


def feature_names(X: Any) -> list[str] | None:
    """X's column names when it has them: a frame (or mapping) whose labels are all strings, in its
    order. None for an array and for a frame whose labels are not strings (a pandas frame built from an
    array): those columns are positions, as scikit-learn reads them. A mix of strings and other labels
    is refused, as scikit-learn refuses it."""
    if not is_frame(X):
        return None
    labels = _labels(X)
    text = [isinstance(c, str) for c in labels]
    if all(text):
        return labels
    if any(text):
        kinds = sorted({type(c).__name__ for c in labels})
        raise TypeError(f"column names are only supported when all of them are strings, but X has {kinds} as "
                        "column name types; convert them all to strings (e.g. X.columns = X.columns.astype(str))")
    return None


def position_names(n: int) -> list[str]:
    """The names fit gives the columns of an input without names (an array): x0, x1 ... by position.
    The groups of such a model name its columns so (``real=["x0", "x2"]``); whether a model was fitted
    on names is recorded (``Preprocessor.named``), never read off a name's shape."""
    return [f"x{i}" for i in range(n)]


def n_columns(X: Any) -> int:
    """How many columns X has (frame, mapping or 2-D array)."""
    return len(_labels(X)) if is_frame(X) else np.asarray(X).shape[1]


def column_names(X: Any) -> list[str]:
    """X's columns as the model names them: a frame's own names, else their positions' (x0, x1 ...)."""
    names = feature_names(X)
    return names if names is not None else position_names(n_columns(X))


def by_position(X: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """X's j-th column under ``names[j]``, whatever X's own labels: how an input is read when its names
    are absent or not the ones the model reads by. X must be ``len(names)`` columns wide."""
    if is_frame(X):
        labels = _labels(X)
        return {n: np.asarray(X[label]) for n, label in zip(names, labels)}
    arr = np.asarray(X)
    return {n: arr[:, j] for j, n in enumerate(names)}


def _columns(X: Any) -> dict[str, np.ndarray]:
    """Every column of X under the name ``column_names`` gives it."""
    names = feature_names(X)
    if names is not None:
        return {n: np.asarray(X[n]) for n in names}
    return by_position(X, position_names(n_columns(X)))


def is_missing(v: Any) -> bool:
    """None, NaN, pandas' NA/NaT: what a frame holds for a missing value."""
    return v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType", "NaTType")


def _as_float(values: np.ndarray) -> np.ndarray:
    """A column as float64, missing values as NaN (object columns hold None/NA for them)."""
    if values.dtype == object:
        values = np.array([np.nan if is_missing(v) else v for v in values], dtype=object)
    return values.astype(np.float64)


def _numeric_matrix(cols: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Stack the named columns into one float32 (n, len(names)) matrix, NaN where a value is missing;
    name the first column holding text or an infinite value."""
    n = len(next(iter(cols.values()))) if cols else 0
    out = np.empty((n, len(names)), np.float32, order="F")  # column writes are contiguous
    for j, name in enumerate(names):
        try:
            out[:, j] = _as_float(cols[name])
        except (TypeError, ValueError):
            raise ValueError(f"column {name!r} holds non-numeric values (dtype {cols[name].dtype}); "
                             "convert it to numbers or declare it categorical") from None
    inf = np.isinf(out)
    if inf.any():
        j = int(inf.any(0).argmax())
        raise ValueError(f"column {names[j]!r} has {int(inf[:, j].sum())} infinite value(s) (or values beyond "
                         f"float32), first at row {int(np.argmax(inf[:, j]))}; drop or clip them")
    return out


def _category(v: Any) -> str:
    return NULL if is_missing(v) else str(v)


def shared_unit(X: np.ndarray) -> bool:
    """Whether real columns look like one unit (pixels, spectra, one sensor type), judged on a sample.

    Two signs must both hold: every varying column's 1-99 % range lies within the typical column's
    range widened by its width on either side (same numeric range), and the columns that are not
    mostly one value (their median absolute deviation is above 0) have standard deviations within
    ``SHARED_SPREAD_RATIO`` of each other. Mostly-constant columns (border pixels, rare counts) take
    no part in the second test: in one unit they are simply quiet, not a different scale.
    """
    std = np.nanstd(X, 0)
    varying = std > 0
    if X.shape[1] < 2 or varying.sum() < 2:
        return False
    lo, hi = np.nanquantile(X[:, varying], [0.01, 0.99], axis=0)
    low, high = float(np.median(lo)), float(np.median(hi))
    width = high - low
    if width <= 0 or (lo < low - width).any() or (hi > high + width).any():
        return False
    busy = np.nanmedian(np.abs(X[:, varying] - np.nanmedian(X[:, varying], 0)), 0) > 0
    spread = std[varying][busy]
    return len(spread) < 2 or float(spread.max() / spread.min()) <= SHARED_SPREAD_RATIO


@dataclass
class Preprocessor:
    """Turns a frame or array into the model's float32 matrix: [real | binary | one-hot cats].

    ``scale``: ``standard`` centres each real column and divides by its standard deviation;
    ``shared`` centres each column and divides all by one standard deviation (the root mean square
    of theirs), so columns keep the weights their common unit gives them; ``none`` leaves values as
    they are; ``auto`` picks ``shared`` when :func:`shared_unit` says the columns share a unit, else
    ``standard``. ``scaling`` records what was used.
    """

    real: list[str]
    binary: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    scale: str = "auto"
    scaling: str = ""
    mean: list[float] = field(default_factory=list)  # what transform subtracts from each real column
    std: list[float] = field(default_factory=list)  # what it then divides by
    column_mean: list[float] = field(default_factory=list)  # each real column's mean and std in its own
    column_std: list[float] = field(default_factory=list)  # unit, whatever the scaling (drift checks read them)
    fill: list[float] = field(default_factory=list)  # model-space value of a missing real/binary entry
    nullable: list[str] = field(default_factory=list)  # real/binary columns fit saw missing: indicator inputs
    vocab: dict[str, list[str]] = field(default_factory=dict)
    # Whether fit read X by column names (a frame with string labels), recorded by ``infer``; False: X
    # was an array (or a frame without names), its columns are positions, named x0, x1 ... in the groups.
    named: bool = True
    # The column each position of an array holds, when not the default (``columns`` when named, else
    # x0, x1 ...): set only for folders of format 3, read as their release read arrays (see reducer.py).
    array_order: list[str] | None = None

    @classmethod
    def infer(cls, X: Any, real: Sequence[str] | None, binary: Sequence[str] | None,
              categorical: Sequence[str] | None, scale: str) -> "Preprocessor":
        """Column groups: what was named, else numeric -> real and anything else -> categorical."""
        names = column_names(X)
        if scale not in SCALES:
            raise ValueError(f"scale={scale!r} is unknown; choose one of {', '.join(SCALES)}")
        if real is None and binary is None and categorical is None:
            cols = _columns(X)
            real = [n for n in names if cols[n].dtype.kind in "biuf"]
            categorical = [n for n in names if n not in real]
        groups = {"real": list(real or []), "binary": list(binary or []), "categorical": list(categorical or [])}
        missing = [n for g in groups.values() for n in g if n not in names]
        if missing:
            raise ValueError(f"column(s) {missing} not in the input, which has {names[:10]}"
                             f"{'...' if len(names) > 10 else ''}")
        if not any(groups.values()):
            raise ValueError("no feature columns: name real, binary or categorical columns")
        return cls(real=groups["real"], binary=groups["binary"], categorical=groups["categorical"], scale=scale,
                   named=feature_names(X) is not None)

    @property
    def columns(self) -> list[str]:
        return [*self.real, *self.binary, *self.categorical]

    @property
    def numeric(self) -> list[str]:
        """The real and binary columns, in matrix order: the ones that can hold NaN."""
        return [*self.real, *self.binary]

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(self.vocab[c]) for c in self.categorical)

    @property
    def nullable_index(self) -> tuple[int, ...]:
        return tuple(self.numeric.index(c) for c in self.nullable)

    def fit(self, X: Any) -> "Preprocessor":
        cols = self._read(X)
        numeric = _numeric_matrix(cols, self.numeric) if self.numeric else np.zeros((0, 0), np.float32)
        empty = [c for c, all_missing in zip(self.numeric, np.isnan(numeric).all(0)) if all_missing]
        if empty and len(numeric):
            raise ValueError(f"column(s) {empty} hold no values at all (every row is missing): drop them")
        self.nullable = [c for c, has in zip(self.numeric, np.isnan(numeric).any(0)) if has]
        r = len(self.real)
        self.mean, self.std, self.column_mean, self.column_std, self.scaling = [], [], [], [], "none"
        if r:
            real = numeric[:, :r].astype(np.float64)
            sample = real[:: max(1, len(real) // _SCALE_SAMPLE)]
            self.scaling = self.scale if self.scale != "auto" else ("shared" if shared_unit(sample) else "standard")
            mean, std = np.nanmean(real, 0), np.nanstd(real, 0)
            self.column_mean, self.column_std = mean.tolist(), std.tolist()
            if self.scaling == "standard":
                scale = np.where(std > 1e-12, std, 1.0)
            elif self.scaling == "shared":
                rms = float(np.sqrt(np.mean(std ** 2)))
                scale = np.full(r, rms if rms > 1e-12 else 1.0)
            else:
                mean, scale = np.zeros(r), np.ones(r)
            self.mean, self.std = mean.tolist(), scale.tolist()
        rates = np.nanmean(numeric[:, r:], 0) if self.binary else np.zeros(0)
        # A missing real value is imputed at its column's mean, a binary one at its base rate.
        self.fill = [*(0.0 for _ in range(r))] if self.scaling != "none" else np.nanmean(
            numeric[:, :r], 0).tolist()
        self.fill += [float(v) for v in rates]
        self.vocab = {}
        for n in self.categorical:
            levels = {_category(v) for v in cols[n]}
            self.vocab[n] = [UNSEEN, *([NULL] if NULL in levels else []), *sorted(levels - {NULL})]
        return self

    def _read(self, X: Any) -> dict[str, np.ndarray]:
        """The model's columns of X. Fitted on names, a frame with names is read by name (its order and
        extra columns do not matter) and refused when it lacks one. Otherwise X is read by position:
        an array (or frame without names) given to a model fitted on names, in the fitted order
        (``columns``); anything given to a model fitted on an array, in that array's order."""
        names = feature_names(X)
        if names is not None and self.named:
            present = set(names)  # once: a pandas index is slow to walk
            missing = [n for n in self.columns if n not in present]
            if missing:
                raise ValueError(f"input lacks column(s) {missing}; the model was fitted on {self.columns}")
            return {n: np.asarray(X[n]) for n in self.columns}
        shape = (n_rows(X), n_columns(X)) if is_frame(X) else np.asarray(X).shape
        if len(shape) != 2 or shape[1] != len(self.columns):
            raise ValueError(f"input has shape {shape}; expected (n_rows, {len(self.columns)}) "
                             f"columns in the order {self.columns[:10]}")
        return by_position(X, self.array_order or (self.columns if self.named else position_names(len(self.columns))))

    def transform(self, X: Any) -> np.ndarray:
        """Frame or array -> (n, d) float32, NaN where a real or binary value is missing. Each group is
        written into the one matrix: a category's one-hot block costs rows x levels, once."""
        cols = self._read(X)
        r, b = len(self.real), len(self.binary)
        out = np.zeros((len(next(iter(cols.values()))), r + b + sum(self.cardinalities)), np.float32)
        if self.real:
            real = _numeric_matrix(cols, self.real)
            real -= np.asarray(self.mean, np.float32)
            real /= np.asarray(self.std, np.float32)
            out[:, :r] = real
        if self.binary:
            binary = _numeric_matrix(cols, self.binary)
            bad = (binary != 0) & (binary != 1) & ~np.isnan(binary)
            if bad.any():
                j = int(bad.any(0).argmax())
                vals = binary[bad[:, j], j]
                raise ValueError(f"binary column {self.binary[j]!r} has {len(vals)} value(s) outside {{0, 1}}, "
                                 f"e.g. {vals[:3].tolist()}; declare it real or fix the values")
            out[:, r:r + b] = binary
        start = r + b
        for n, card in zip(self.categorical, self.cardinalities):
            index = {c: i for i, c in enumerate(self.vocab[n])}
            codes = np.array([index.get(_category(v), 0) for v in cols[n]], dtype=np.int64)
            out[np.arange(len(codes)), start + codes] = 1.0
            start += card
        return out

    def inverse(self, M: np.ndarray) -> np.ndarray:
        """Activated model output (n, d) -> input space: real values, binary probabilities, labels."""
        r, b = len(self.real), len(self.real) + len(self.binary)
        real = M[:, :r] * np.asarray(self.std) + np.asarray(self.mean) if r else M[:, :0]
        out = [real, M[:, r:b]]
        start = b
        labels = []
        for n in self.categorical:
            vocab = np.asarray([None if v == NULL else v for v in self.vocab[n]], dtype=object)
            card = len(vocab)
            labels.append(vocab[M[:, start:start + card].argmax(1)][:, None])
            start += card
        if labels:
            return np.concatenate([np.concatenate(out, 1).astype(object), *labels], 1)
        return np.concatenate(out, 1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessor":
        return cls(**d)

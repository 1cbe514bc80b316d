"""Whether a challenger replaces the champion: the gate on the shared holdout's error."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger_error: float, champion_error: float | None, tolerance: float) -> Decision:
    """Promote when there is no champion to compare with (none yet, or one this code cannot load), or when the challenger's holdout error is at most the
    champion's times ``1 + tolerance``; a NaN error never passes."""
    if champion_error is None:
        return Decision(True, "no champion to compare with")
    limit = champion_error * (1 + tolerance)
    if challenger_error <= limit:
        return Decision(True, f"holdout error {challenger_error:.5g} <= champion's {champion_error:.5g} "
                              f"x (1 + {tolerance:g})")
    return Decision(False, f"holdout error {challenger_error:.5g} > champion's {champion_error:.5g} "
                           f"x (1 + {tolerance:g})")

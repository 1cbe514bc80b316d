"""When to retrain: the refresh policy of ``[training]``, as one pure decision."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tasks.settings import TrainingSettings


@dataclass(frozen=True)
class ChampionHealth:
    """What the champion looks like on today's partition, beside what it looked like in training."""

    age_days: float
    mean_score: float  # mean anomaly score on the partition
    baseline_score: float  # mean anomaly score on its own held-out rows, at training
    anomaly_share: float  # share of the partition's rows over the anomaly threshold
    expected_anomaly_share: float  # 1 - the anomaly quantile: the share seen in training


def champion_health(created: float, now: float, rows: pl.DataFrame, baseline_score: float,
                    anomaly_quantile: float) -> ChampionHealth:
    """The champion (registered at ``created``, seconds since the epoch) judged on ``rows`` it encoded."""
    return ChampionHealth(age_days=(now - created) / 86400, mean_score=float(rows["anomaly_score"].mean()),
                          baseline_score=baseline_score, anomaly_share=float(rows["is_anomaly"].mean()),
                          expected_anomaly_share=1 - anomaly_quantile)


def refresh_reason(policy: TrainingSettings, health: ChampionHealth | None) -> str | None:
    """Why a (warm-started) retraining is due, or None to keep serving the champion.

    ``health`` is None when there is no champion: then training is due whatever the policy says,
    since nothing could encode the partition.
    """
    if health is None:
        return "no champion model yet"
    if policy.refresh == "never":
        return None
    if policy.refresh == "always":
        return "refresh = always"
    if health.age_days > policy.max_model_age_days:
        return f"champion is {health.age_days:.0f} days old (max_model_age_days = {policy.max_model_age_days})"
    ratio = health.mean_score / health.baseline_score if health.baseline_score > 0 else float("inf")
    if ratio > policy.drift_tolerance:
        return (f"drift: mean anomaly score {health.mean_score:.4g} is {ratio:.2f}x the champion's "
                f"held-out baseline {health.baseline_score:.4g} (drift_tolerance = {policy.drift_tolerance})")
    share = health.anomaly_share / health.expected_anomaly_share if health.expected_anomaly_share > 0 else 0.0
    if share > policy.anomaly_share_tolerance:
        return (f"drift: {health.anomaly_share:.1%} of rows are anomalies, {share:.1f}x the "
                f"{health.expected_anomaly_share:.1%} seen in training "
                f"(anomaly_share_tolerance = {policy.anomaly_share_tolerance})")
    return None

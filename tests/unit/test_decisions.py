"""The pure decisions: refresh, promotion, the backfill plan, the training set and its holdout."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tasks.rules.plan import plan_days
from tasks.data.ingest import Partition
from tasks.rules.gate import decide
from tasks.rules.refresh import ChampionHealth, champion_health, refresh_reason
from tasks.settings import TrainingSettings
from tasks.data.window import split_holdout, window_sample


def test_refresh_policy_reasons():
    healthy = ChampionHealth(age_days=3, mean_score=1.0, baseline_score=1.0, anomaly_share=0.01,
                             expected_anomaly_share=0.01)
    auto = TrainingSettings()
    assert refresh_reason(auto, None) == "no champion model yet"
    assert refresh_reason(TrainingSettings(refresh="never"), None) == "no champion model yet"
    assert refresh_reason(auto, healthy) is None
    assert refresh_reason(TrainingSettings(refresh="always"), healthy) == "refresh = always"
    old = ChampionHealth(**{**vars(healthy), "age_days": 31})
    assert "31 days old" in refresh_reason(auto, old)
    assert refresh_reason(TrainingSettings(refresh="never"), old) is None
    drifted = ChampionHealth(**{**vars(healthy), "mean_score": 1.6})
    assert "mean anomaly score 1.6 is 1.60x" in refresh_reason(auto, drifted)
    anomalous = ChampionHealth(**{**vars(healthy), "anomaly_share": 0.05})
    assert "5.0% of rows are anomalies" in refresh_reason(auto, anomalous)


def test_champion_health_reads_the_encoded_rows():
    rows = pl.DataFrame({"anomaly_score": [1.0, 3.0], "is_anomaly": [False, True]})
    h = champion_health(created=0.0, now=2 * 86400.0, rows=rows, baseline_score=1.0, anomaly_quantile=0.99)
    assert h == ChampionHealth(age_days=2.0, mean_score=2.0, baseline_score=1.0, anomaly_share=0.5,
                               expected_anomaly_share=pytest.approx(0.01))


def test_promotion_gate():
    assert decide(5.0, None, 0.0).promote
    assert decide(1.0, 1.0, 0.0).promote and not decide(1.01, 1.0, 0.0).promote
    assert decide(1.04, 1.0, 0.05).promote
    assert not decide(float("nan"), 1.0, 0.0).promote
    assert "1.01 > champion's 1" in decide(1.01, 1.0, 0.0).reason
    # the first model too: worse than PCA at its size on its own held-out rows is never promoted silently
    assert not decide(0.5, None, 0.0, val_error=0.31, pca_val_error=0.30).promote
    assert "above PCA's 0.3" in decide(0.5, None, 0.0, val_error=0.31, pca_val_error=0.30).reason
    assert decide(0.5, None, 0.0, val_error=0.30, pca_val_error=0.30).promote
    assert decide(0.5, None, 0.0, val_error=0.30, pca_val_error=float("nan")).promote  # no held-out rows
    assert not decide(0.5, None, 0.0, val_error=float("nan"), pca_val_error=0.3).promote
    assert not decide(float("nan"), None, 0.0).promote


def _day(i: int) -> dt.date:
    return dt.date(2024, 1, 1) + dt.timedelta(days=i)


def test_backfill_plan_runs_what_the_champion_has_not_published():
    raw = {_day(0), _day(1), _day(2), _day(3)}
    plan = plan_days(_day(0), _day(4), raw, champion_version=2, quarantined_days={_day(2): "q/report.json"},
                     published={_day(0): [1, 2], _day(1): [1], _day(2): [1]}, recorded={(_day(0), 2)})
    assert [(p.date, p.action, p.state) for p in plan] == [
        ("2024-01-01", "skip", "published by champion v2"),
        ("2024-01-02", "run", "published by older v1 only"),
        ("2024-01-03", "run", "failed validation last time (report: q/report.json)"),
        ("2024-01-04", "run", "not published"),
        ("2024-01-05", "fail", "no raw partition")]
    assert plan_days(_day(0), _day(0), raw, 2, {}, {_day(0): [2]}, {(_day(0), 2)}, force=True)[0].action == "run"
    assert plan_days(_day(0), _day(0), raw, None, {}, {_day(0): [1]}, set())[0].action == "run"
    with pytest.raises(ValueError, match="before start"):
        plan_days(_day(1), _day(0), raw, None, {}, {}, set())


def _part(i: int, rows: int) -> Partition:
    frame = pl.LazyFrame({"id": range(rows), "x": [float(i)] * rows})
    return Partition(_day(i), f"raw/dt={_day(i)}", [], frame, {"keys": ["id"], "real": ["x"], "binary": [],
                                                              "categorical": []}, [], [])


def test_window_sample_weighs_days_alike_within_the_budget():
    frame = window_sample([(_part(0, 1000), 1000), (_part(1, 100), 100)], ["x"], max_rows=200, window_days=2)
    assert frame.columns == ["x"] and frame.height <= 200
    counts = frame.group_by("x").len().sort("x")["len"].to_list()
    assert counts == [100, 100]  # the big day sampled down to its share, the small one whole
    # a window of four days, two of them valid: each valid day keeps a quarter, the failed days' share unused
    frame = window_sample([(_part(0, 1000), 1000), (_part(1, 1000), 1000)], ["x"], max_rows=200, window_days=4)
    assert frame.group_by("x").len().sort("x")["len"].to_list() == [50, 50]


def test_holdout_is_a_seeded_tenth():
    frame = pl.DataFrame({"i": range(95)})
    train, hold = split_holdout(frame, seed=0)
    assert hold.height == 9 and train.height == 86
    assert set(train["i"]) | set(hold["i"]) == set(range(95)) and not set(train["i"]) & set(hold["i"])
    again, _ = split_holdout(frame, seed=0)
    assert again.equals(train)
    assert split_holdout(pl.DataFrame({"i": [1, 2]}), seed=0)[1].height == 1

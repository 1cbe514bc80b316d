"""Train a challenger on the window of valid partitions; register it; promote it if it passes the gate
(``tasks.training`` owns the sequence; ``tasks.promote`` the promotion)."""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import runtime, training
from tasks.names import FLOWS
from tasks.outcomes import TrainResult
from tasks.parameters import Config, as_settings, run_name, scheduled_day


@flow(name=FLOWS["train"], flow_run_name=run_name("train"))
def train_flow(config: Config, end: str | None = None, warm_start: bool = False, reason: str = "requested",
               if_champion_is: int | None = None) -> TrainResult:
    """Fit on the valid partitions of the window ending at ``end`` (default: the day before the run's
    scheduled tick); promote if no worse than the champion.
    ``warm_start`` continues from the champion; ``if_champion_is``: see ``tasks.training.train``."""
    settings = as_settings(config)
    res = runtime.start(settings)
    end_day = scheduled_day(settings, end, "end")
    return training.train(res, end_day, warm_start, reason, if_champion_is, get_run_logger().info)

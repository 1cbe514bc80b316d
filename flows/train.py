"""Train a challenger on the window of valid partitions; register it; promote it if it passes the gate
(``tasks.training`` owns the sequence; ``tasks.promote`` the promotion)."""
from __future__ import annotations

from prefect import flow, get_run_logger

from tasks import training
from tasks.names import FLOWS
from tasks.outcomes import TrainResult
from tasks.parameters import Config, as_settings, parse_date, run_name
from tasks.resources import Resources


@flow(name=FLOWS["train"], flow_run_name=run_name("train"))
def train_flow(config: Config, end: str | None = None, warm_start: bool = False, reason: str = "requested",
               if_champion_is: int | None = None) -> TrainResult:
    """Fit on the valid partitions of the window ending at ``end``; promote if no worse than the champion.
    ``warm_start`` continues from the champion; ``if_champion_is``: see ``tasks.training.train``."""
    res = Resources(as_settings(config))
    return training.train(res, parse_date(end, "end"), warm_start, reason, if_champion_is, get_run_logger().info)

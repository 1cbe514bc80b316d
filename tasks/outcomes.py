"""What the flows return: one dataclass per flow, rendered for the CLI and Prefect's artifacts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class NightlyResult:
    date: str
    rows_in: int
    rows_out: int
    anomalies: int
    latent_dim: int
    latent_dtype: str
    raw_bytes: int
    feature_bytes: int
    raw_memory_bytes: int
    feature_memory_bytes: int
    model_version: int
    run_id: str
    table_uri: str
    delta_version: int
    val_error: float | None
    pca_val_error: float | None
    val_mse: float | None
    pca_val_mse: float | None
    error_unit: str
    refresh: str  # why the champion was refreshed ("" when it was not)
    promoted: bool
    warnings: str

    def markdown(self, dataset: str) -> str:
        return "\n".join([f"# {dataset} {self.date}", "| | |", "|---|---|",
                          *(f"| {k} | {v} |" for k, v in asdict(self).items())])


@dataclass
class TrainResult:
    model_version: int
    run_id: str
    promoted: bool
    reason: str  # the promotion decision's
    holdout_error: float
    champion_holdout_error: float | None
    train_rows: int
    holdout_rows: int
    val_error: float
    pca_val_error: float
    latent_dim: int
    trained: bool = True  # False: another run's version was used (see reason)
    skipped_days: dict[str, str] = field(default_factory=dict)  # window days not trained on -> why
    published_days: list[str] = field(default_factory=list)  # days the promotion published with this version


@dataclass
class PromoteResult:
    model_version: int
    previous_version: int | None
    days_reencoded: int
    reason: str


@dataclass
class DayOutcome:
    date: str
    status: str  # done | skipped | failed
    detail: str
    seconds: float = 0.0  # what the day's work took here: wall ...
    cpu_seconds: float = 0.0  # ... and CPU time (tasks/cost.py)

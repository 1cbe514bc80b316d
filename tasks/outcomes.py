"""What the flows return: one dataclass per flow, rendered for the CLI and Prefect's artifacts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.cost import Cost
    from tasks.data.ingest import Partition
    from tasks.registry.client import ModelRef
    from tasks.resources import Resources
    from tasks.rules.plan import PlannedDay
    from tasks.store.table import Published
    from tasks.validation import ValidationReport


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
    caught_up: str = ""  # missed days this run published before its own, comma-separated

    @classmethod
    def of(cls, res: "Resources", ref: "ModelRef", part: "Partition", report: "ValidationReport",
           pub: "Published", refresh: str | None, promoted: bool) -> "NightlyResult":
        """The run's result: what was read and written, and the serving model's held-out errors."""
        run = res.registry.run_metrics(ref.run_id)
        model = res.registry.load_reducer(ref)
        return cls(date=part.date.isoformat(), rows_in=report.rows, rows_out=pub.rows, anomalies=pub.anomalies,
                   latent_dim=model.latent_dim, latent_dtype=res.table.latent_dtype(),
                   raw_bytes=part.raw_bytes, feature_bytes=pub.bytes, raw_memory_bytes=pub.raw_memory_bytes,
                   feature_memory_bytes=pub.memory_bytes, model_version=ref.version, run_id=ref.run_id,
                   table_uri=pub.table_uri, delta_version=pub.table_version, val_error=run.get("val_error"),
                   pca_val_error=run.get("pca_val_error"), val_mse=run.get("val_mse"),
                   pca_val_mse=run.get("pca_val_mse"), error_unit=model.error_unit_, refresh=refresh or "",
                   promoted=promoted, warnings="; ".join(str(w) for w in report.warnings))



def night_markdown(dataset: str, day: str, result: NightlyResult | None, caught: "list[DayOutcome]", cost: "Cost",
                   error: str | None) -> str:
    """A nightly's artifact: its verdict, the days it caught up, what it published and what the night cost."""
    lines = [f"# {dataset} {day}: {'FAILED' if error else 'published'}", ""]
    if error:
        lines += ["```", error, "```", ""]
    lines += [f"cost of the night: {cost.summary()}", ""]
    if caught:
        lines += ["| missed day | status | detail |", "|---|---|---|",
                  *(f"| {o.date} | {o.status} | {o.detail.splitlines()[0]} |" for o in caught), ""]
    if result is not None:
        lines += ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in asdict(result).items())]
    return "\n".join(lines)


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

    @classmethod
    def failed(cls, date: str, error: Exception) -> "DayOutcome":
        """A day whose step raised: its own message says what is wrong."""
        return cls(date, "failed", str(error) or type(error).__name__)

    def why(self) -> str:
        """The detail's first two lines, on one: what failed and, for a validation report, its first finding."""
        return " ".join(line.strip() for line in self.detail.splitlines()[:2])


def days_failed(failed: "list[DayOutcome]", of: str, done: str, outcomes: object) -> "DaysFailed":
    """The error a run with failed days ends with: how many ``of`` its days, each with why, and what
    happened to the others (``done``)."""
    from tasks.errors import DaysFailed

    return DaysFailed(f"{len(failed)} of {of} failed ({done}): " + "; ".join(f"{o.date}: {o.why()}" for o in failed),
                      outcomes)


def backfill_outcomes(plan: "list[PlannedDay]", done: dict[str, DayOutcome], promoted_here: dict[str, int],
                      raw_uri: str) -> list[DayOutcome]:
    """Each planned day's outcome, in the plan's order: what the run did, what it skipped and why."""
    outcomes = []
    for item in plan:
        if item.action == "skip" and item.date in promoted_here:
            outcome = DayOutcome(item.date, "done", f"published with version {promoted_here[item.date]} "
                                                    "by this backfill's promotion")
        elif item.action == "skip":
            outcome = DayOutcome(item.date, "skipped", item.state)
        elif item.action == "fail":
            outcome = DayOutcome(item.date, "failed", f"no raw partition for {item.date} under {raw_uri}")
        else:
            outcome = done[item.date]
        outcomes.append(outcome)
    return outcomes

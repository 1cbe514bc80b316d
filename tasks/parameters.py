"""What the flows take: the settings (or, from a deployment, the config's path), the day a run is for, run names."""
from __future__ import annotations

import datetime as dt

from tasks.errors import ConfigError
from tasks.rules.nightly import day_of_tick
from tasks.settings import Settings, load_settings

# A flow's ``config``: the checked settings (the CLI reads the file once and passes them down), or the
# config file's path, which a deployment's run passes and the flow reads once.
Config = Settings | str


def as_settings(config: Config) -> Settings:
    return config if isinstance(config, Settings) else load_settings(config)


def parse_date(value: str | dt.date, what: str = "date") -> dt.date:
    """An ISO date; a ConfigError naming ``what`` otherwise."""
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a date; use YYYY-MM-DD") from None


def scheduled_day(settings: Settings, value: str | dt.date | None, what: str = "date") -> dt.date:
    """The day a nightly (or scheduled training) run is for: ``value`` when given, else the day before
    the run's scheduled tick in [schedule].timezone (Prefect's scheduled start time: a late run keeps
    its day; a run started by hand is scheduled for when it was created)."""
    if value is not None:
        return parse_date(value, what)
    from prefect.runtime import flow_run

    return day_of_tick(flow_run.scheduled_start_time, settings.schedule.timezone)


def day_for_now(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """The day a nightly started ``now`` would publish: yesterday in [schedule].timezone."""
    return day_of_tick(now or dt.datetime.now(dt.timezone.utc), settings.schedule.timezone)


def run_name(kind: str):
    """A flow_run_name callable: '<kind>-<dataset>-<day>' (the config file's stem if it cannot be read):
    the day a nightly or a training is for when its parameters leave it to the schedule."""

    def name() -> str:
        from prefect.runtime import flow_run  # here: the CLI's read-only commands parse dates without Prefect

        p = flow_run.parameters
        date, config = p.get("date") or p.get("end"), p.get("config")
        try:
            settings = config if isinstance(config, Settings) else (
                Settings.model_validate(config) if isinstance(config, dict) else load_settings(config))
        except (ConfigError, ValueError):  # the flow reports a bad config
            settings = None
        if date is None and settings is not None and kind in ("nightly", "train"):
            date = scheduled_day(settings, None).isoformat()
        dataset = settings.dataset.name if settings else str(config).rsplit("/", 1)[-1].removesuffix(".toml")
        return f"{kind}-{dataset}-{date or 'latest'}"

    return name

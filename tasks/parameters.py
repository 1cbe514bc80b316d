"""What the flows take: the config's path (or settings built in code), the day a run is for, run names."""
from __future__ import annotations

import datetime as dt

from tasks.errors import ConfigError, redact
from tasks.rules.nightly import day_of_tick
from tasks.settings import Settings, load_settings

# A flow's ``config``: the config file's path, which the flow reads once (what a deployment, the CLI, a
# backfill's subflow and a training handed to the GPU pool pass: ``as_config``), or settings built in code.
Config = Settings | str


def as_settings(config: Config) -> Settings:
    return config if isinstance(config, Settings) else load_settings(config)


def as_config(settings: Settings) -> Config:
    """What a flow run started with ``settings`` takes as its ``config``. Prefect keeps a run's parameters
    and shows them in its UI and API, so they must hold no secret: settings read from a file travel as
    its path, which the run reads again as a deployment's run does (``MLFLOW_TRACKING_URI``, where set,
    overriding its tracking URI there too); settings no file gives (built or changed in code) travel as
    they are, refused when a URI in them carries credentials."""
    if settings.path is not None and load_settings(settings.path) == settings:
        return settings.path
    dumped = settings.model_dump_json()
    if redact(dumped) != dumped:
        raise ConfigError(f"settings with credentials in a URI differ from their config file ({settings.source}: "
                          "built or changed in code, or the file changed since), so a flow run would take them, "
                          "not the file's path, and Prefect keeps a run's parameters: read them with load_settings "
                          "(credentials in MLFLOW_TRACKING_URI) and run again")
    return settings


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

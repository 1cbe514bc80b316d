"""What the flows take: the settings (or, from a deployment, the config's path), dates, run names."""
from __future__ import annotations

import datetime as dt

from tasks.errors import ConfigError
from tasks.settings import Settings, load_settings

# A flow's ``config``: the checked settings (the CLI reads the file once and passes them down), or the
# config file's path, which a deployment's run passes and the flow reads once.
Config = Settings | str


def as_settings(config: Config) -> Settings:
    return config if isinstance(config, Settings) else load_settings(config)


def parse_date(value: str | dt.date | None, what: str = "date") -> dt.date:
    """ISO date, or yesterday (the nightly default) when None."""
    if value is None:
        return dt.date.today() - dt.timedelta(days=1)
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{what} {value!r} is not a date; use YYYY-MM-DD") from None


def run_name(kind: str):
    """A flow_run_name callable: '<kind>-<dataset>-<date>' (the config file's stem if it cannot be read)."""

    def name() -> str:
        from prefect.runtime import flow_run  # here: the CLI's read-only commands parse dates without Prefect

        p = flow_run.parameters
        date = p.get("date") or p.get("end") or "latest"
        config = p.get("config")
        if isinstance(config, Settings):
            dataset = config.dataset.name
        elif isinstance(config, dict):  # settings as the API hands them back
            dataset = config.get("dataset", {}).get("name", "?")
        else:  # a deployment's run: the path, read here once more (the flow reports a bad file)
            try:
                dataset = load_settings(config).dataset.name
            except ConfigError:
                dataset = str(config).rsplit("/", 1)[-1].removesuffix(".toml")
        return f"{kind}-{dataset}-{date}"

    return name

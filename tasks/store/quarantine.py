"""Partitions that failed validation: their reports, kept beside the feature table until they pass.

``{features.uri}/_quarantine/{table}/dt=YYYY-MM-DD/report.json`` holds the latest failing report of
each day (the folder's leading underscore keeps it out of Delta's and readers' way). Publishing the
day removes it, so what is listed here is exactly what is still failing.
"""
from __future__ import annotations

import datetime as dt
import json

from typing import TYPE_CHECKING

from tasks.settings import Settings
from tasks.store.objects import Storage, open_storage

if TYPE_CHECKING:
    from tasks.validation import ValidationReport


def root(settings: Settings) -> Storage:
    """The quarantine's folder of the configured table."""
    return open_storage(f"{settings.features.uri.rstrip('/')}/_quarantine/{settings.table_name}")


def _day(store: Storage, date: dt.date, name: str = "") -> str:
    """The day's folder, or the file ``name`` in it."""
    return store.join(f"dt={date.isoformat()}", *([name] if name else []))


def _report_uri(store: Storage, date: dt.date) -> str:
    return _day(store, date, "report.json")


def record(store: Storage, date: dt.date, report: "ValidationReport", fingerprint: str) -> str:
    """Keep the failing report (with the raw fingerprint it judged) and its Data Docs pages; returns
    where the report went (the pages lie beside it as ``data_docs_<suite>.html``)."""
    uri = _report_uri(store, date)
    for suite, html in report.docs.items():
        store.write_text(_day(store, date, f"data_docs_{suite}.html"), html)
    body = json.loads(report.to_json())
    body |= {"date": date.isoformat(), "raw_fingerprint": fingerprint,
             "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    store.write_text(uri, json.dumps(body, indent=1, default=str))  # last: its presence marks the day
    return uri


def release(store: Storage, date: dt.date) -> None:
    """The day passed and was published: it is no longer quarantined."""
    store.delete(_report_uri(store, date))  # first: the day stops counting as failed
    for f in store.list_files(_day(store, date)):
        store.delete(f.uri)


def quarantined(store: Storage) -> dict[dt.date, str]:
    """Days whose latest run failed validation -> where their report is."""
    days = {}
    for name in store.list_dirs(store.uri):
        if name.startswith("dt=") and any(f.uri.endswith("/report.json") for f in store.list_files(store.join(name))):
            day = dt.date.fromisoformat(name[3:])
            days[day] = _report_uri(store, day)
    return days

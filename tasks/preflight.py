"""Before any work: does every service a command needs answer?

One bounded probe each (``[services].check_tries`` tries of ``check_timeout_seconds`` to connect and
to answer: about 20 s at most by default), so a server that is down stops the command in one line
naming it. The run's own clients keep their long retries (MLflow's minutes, boto3's attempts), which
ride out a short outage mid-run.
"""
from __future__ import annotations

import time

from tasks.errors import ConfigError, StorageError, redact
from tasks.settings import Settings
from tasks.store.objects import open_storage


def _no_answer(url: str, settings: Settings) -> str | None:
    """None when ``url`` answers HTTP at all (what it allows is its server's to say); else why not.
    Credentials in the URL (``https://user:secret@host``) are sent as HTTP basic auth."""
    import base64
    from urllib.error import HTTPError
    from urllib.parse import unquote, urlsplit, urlunsplit
    from urllib.request import Request, urlopen

    parts = urlsplit(url)
    request = Request(urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))))
    if parts.username:
        token = base64.b64encode(f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    reason, tries = "", settings.services.check_tries
    for attempt in range(tries):
        try:
            urlopen(request, timeout=settings.services.check_timeout_seconds).close()
            return None
        except HTTPError:
            return None
        except OSError as e:  # refused, unreachable, timed out (URLError wraps the socket's error)
            reason = type(getattr(e, "reason", e)).__name__
        if attempt + 1 < tries:
            time.sleep(2 ** attempt)
    return f"{reason} after {tries} tries"


def check_mlflow(settings: Settings) -> None:
    """The tracking server, when the config names one (a local store always answers)."""
    uri = settings.mlflow.tracking_uri
    if uri.startswith(("http://", "https://")) and (why := _no_answer(f"{uri.rstrip('/')}/health", settings)):
        raise StorageError(f"the MLflow tracking server {redact(uri)} does not answer ({why}): "
                           "check [mlflow].tracking_uri (or MLFLOW_TRACKING_URI) and that the server runs")


def check_prefect_api(settings: Settings) -> None:
    """The Prefect API, when the profile or PREFECT_API_URL names one (else a temporary local API is
    started). Without this, Prefect's client fails inside the flow engine with a traceback."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if url and (why := _no_answer(f"{url.rstrip('/')}/health", settings)):
        raise StorageError(f"the Prefect API {url} does not answer ({why}): check PREFECT_API_URL (or the "
                           "Prefect profile's) and that the server runs; unset it to run without a server")


def check_stores(settings: Settings, raw: bool = True, features: bool = True, write: bool = True) -> None:
    """The raw data's store (``raw``) and the feature table's (``features``); ``write``: the feature
    table, its state folder and the quarantine can be written (a full disk too)."""
    for uri in [settings.dataset.raw_uri] * raw + [settings.features.uri] * features:
        open_storage(uri).check_reachable(settings.services.check_tries, settings.services.check_timeout_seconds)
    if raw:  # read-only to us: it must be there already
        open_storage(settings.dataset.raw_uri).check_exists("[dataset].raw_uri")
    if features and write:
        from tasks.store import quarantine

        store = open_storage(settings.features.uri)
        state = open_storage(settings.state_uri)
        for uri in (settings.table_uri, state.join("published"), state.join("leases", "publish"),
                    quarantine.root(settings).uri):
            store.check_writable(uri)
        check_table(settings)


LEGACY_TABLE = "features"  # [features].table when a config left it out, before it became the dataset's name


def check_table(settings: Settings) -> None:
    """The feature table is this dataset's (its recorded owner) and stores the latent type the config
    names (when it names one), and a config that leaves ``[features].table`` out does not quietly start a
    new table beside the one an earlier release wrote at the old default location for it."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from tasks.store import identity
    from tasks.store.table import FeatureTable

    table = FeatureTable(settings)
    table.check_owner()
    table.latent_dtype()
    if settings.features.table is not None or settings.table_name == LEGACY_TABLE or table.open() is not None:
        return
    legacy = f"{settings.features.uri.rstrip('/')}/{LEGACY_TABLE}"
    try:
        old = DeltaTable(legacy, storage_options=table.options)
    except TableNotFoundError:
        return
    owner = old.metadata().configuration.get(identity.DATASET)
    if owner in (None, settings.dataset.name):
        raise ConfigError(f"{settings.source}: [features].table is not set, and its default is now the dataset's "
                          f"name ({settings.table_uri}), but {legacy} holds a table an earlier release published for "
                          f"it: set [features].table = \"{LEGACY_TABLE}\" to go on publishing there (or name a new "
                          "table to start afresh)")

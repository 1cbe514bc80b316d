"""``latentfeed``: the command line. Exit 0 all done; 1 a partition or step failed; 2 bad usage or config."""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

from tasks.errors import ConfigError, DaysFailed, LatentfeedError, redact

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _check_model_fits_columns(settings, until: str | None, with_champion: bool = True) -> None:
    """What the columns of the newest raw partition up to ``until`` (the command's date; without one
    the newest of all) tell about the model config, checked before Prefect starts: a training takes
    its columns from the newest valid day of its window. ``with_champion``: the command encodes days
    with the champion it finds (not a training first), which cannot encode without a column the config
    stopped naming. A store, partition or champion that cannot be read, or a partition that lacks
    configured columns, is left to the run to report."""
    from tasks.errors import IngestError, StorageError
    from tasks.model.fit import check_latent_width
    from tasks.data.ingest import FEATURE_GROUPS, list_partition_dates, scan_partition
    from tasks.store.objects import open_storage

    if with_champion:
        from tasks.registry.client import Registry
        from tasks.validation.checks import unnamed_columns

        try:
            ref, champion, _ = Registry(settings).serving()
        except Exception:  # whatever fails here fails the run again, which reports it
            champion = None
        p = champion.preprocessor_ if champion is not None else None
        dropped = unnamed_columns(p.columns, settings) if p is not None else []
        if dropped:
            keys = ", ".join(f"[dataset].{g}" for g in FEATURE_GROUPS if set(dropped) & set(getattr(p, g)))
            raise ConfigError(f"{settings.source}: [dataset] no longer names column(s) {dropped} that the champion "
                              f"(model {ref.name} version {ref.version}) reads, so it cannot encode a day: name them "
                              f"again in {keys}, or train a version without them with `latentfeed train --config "
                              f"{settings.source}` (promoted if it passes the gate); nothing was run")
    try:
        storage = open_storage(settings.dataset.raw_uri)
        dates, _ = list_partition_dates(storage, settings)
        dates = [d for d in dates if until is None or d.isoformat() <= until]
        part = scan_partition(storage, settings, dates[-1]) if dates else None
    except (IngestError, StorageError):
        return
    if part is not None and not part.missing:
        check_latent_width(settings, part.columns, part.uri)


def _settings(args, raw: bool = True, features: bool = True, write: bool = True):
    """The checked config, read before any work (a flow the command runs reads it again: ``_run_flow``),
    and the services it needs checked (``tasks.runtime.check_services``: the raw store when ``raw``, the
    feature store when ``features``, writable when ``write``). Once the config passed, a flow command
    also starts Prefect's temporary API in the background (``_start_temporary_api_early``)."""
    from tasks import runtime
    from tasks.settings import load_settings

    global _early_api
    settings = load_settings(args.config)
    runtime.check_services(settings, raw, features, write)
    _early_api = _start_temporary_api_early(args)
    return settings


def _date(value: str | None, what: str = "date") -> str | None:
    """A date argument checked before any work (None: the flow's default)."""
    from tasks.parameters import parse_date

    return None if value is None else parse_date(value, what).isoformat()


_WATCHER = """import os, signal, sys, time
parent, server = int(sys.argv[1]), int(sys.argv[2])
while os.getppid() == parent:
    time.sleep(1)
try:
    os.kill(server, signal.SIGTERM)
except ProcessLookupError:
    pass
"""


def _temporary_api_dies_with_us() -> None:
    """Without a Prefect server, start the temporary local API here, with a small watcher process
    that stops it once this process is gone. Prefect stops it at a normal exit, but a command killed
    with SIGKILL left it running for good."""
    import subprocess

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    server = SubprocessASGIServer()  # the instance Prefect's client uses in this process
    if server.running:  # started (and watched) by an earlier flow of this command
        return
    server.start()
    subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), str(server.server_process.pid)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_FLOW_COMMANDS = ("run", "train", "promote", "backfill")
_early_api: Future | None = None  # the temporary API, starting while the command reads its inputs


def _start_temporary_api_early(args) -> Future | None:
    """Start the temporary local API (when no server is configured) in the background once the config
    passed its checks: its process takes ~8 s to come up, which now overlaps our flow's imports, the
    champion lookups and the plan on the other core instead of following them (the commands import
    their flows after ``_settings`` for this). Not for a dry run."""
    if args.command not in _FLOW_COMMANDS or getattr(args, "dry_run", False):
        return None
    import prefect.server.api.server  # noqa: F401  imported here, not in the thread, where our own imports would slow it
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # before the flow would set it up: "Starting temporary server on <url>" is logged
    started: Future = Future()

    def start() -> None:
        try:
            _temporary_api_dies_with_us()
            started.set_result(None)
        except BaseException as e:  # raised where the flow is started, as a start there would raise it
            started.set_exception(e)

    threading.Thread(target=start, name="latentfeed-temporary-api", daemon=True).start()
    return started


def _import_while_the_api_starts() -> None:
    """The flows' heavy libraries (Great Expectations to validate, MLflow's client, torch to load a
    model), each imported lazily where it is used: imported here, while the temporary API starts on the
    other core, a run reaches its first day that much sooner (about 7 s of imports)."""
    import great_expectations  # noqa: F401
    import mlflow  # noqa: F401
    import torch  # noqa: F401


def _run_flow(fn, settings, **params) -> tuple[bool, object]:
    """Run a flow on the config ``settings`` were read from (``as_config``: its path, never the settings,
    which Prefect would keep as the run's parameter, a tracking URI's password included); return (ok,
    result-or-message) without letting a traceback reach the user (a run whose days failed returns its
    DaysFailed, which carries what it did). A ValueError from inside a flow (the estimator refusing what
    it was given) is a failed run, exit 1, not a usage error: Prefect's log above keeps its traceback."""
    from prefect.exceptions import PrefectException

    from tasks.parameters import as_config
    from tasks.preflight import check_prefect_api

    config = as_config(settings)
    check_prefect_api(settings)
    if _early_api is not None:
        _import_while_the_api_starts()
        _early_api.result()  # a failed start raises here, as it would below
    _temporary_api_dies_with_us()
    try:
        return True, fn(config=config, **params)
    except DaysFailed as e:  # the run failed, and what it did comes with it
        return False, e
    except (LatentfeedError, PrefectException, ValueError) as e:
        return False, redact(str(e) or type(e).__name__)
    except Exception as e:
        if (why := _service_fault(e, settings)) is None:
            raise
        return False, why


def _service_fault(e: Exception, settings) -> str | None:
    """One line naming the service for a fault of MLflow (a server answering errors, dying mid-run, a
    model's artifacts gone); None for anything else, which is a bug and keeps its traceback."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    if isinstance(e, (MlflowException, RequestException)):
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return redact(f"MLflow ({settings.mlflow.tracking_uri}) failed: {first}; check the server and run again: "
                      "what did not finish is redone (a day committed without its record is redone whole)")
    return None


def cmd_run(args) -> int:
    settings = _settings(args)  # refuse a bad config before starting Prefect; our heavy imports follow
    from .nightly import nightly_flow

    from tasks.parameters import day_for_now

    date = _date(args.date) or day_for_now(settings).isoformat()
    _check_model_fits_columns(settings, date)
    ok, out = _run_flow(nightly_flow, settings, date=date)
    if isinstance(out, DaysFailed):  # the days missed before it, then the day itself when it was published
        result, caught = out.outcomes
        print("\n".join([_format_days(caught)] + ([_format_runs([result])] if result else [])))
        out = redact(str(out))
    elif ok:
        print(_format_runs([out]))
    if not ok:
        print(f"FAILED: {out}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_train(args) -> int:
    settings = _settings(args)
    from .train import train_flow

    from tasks.parameters import day_for_now

    end = _date(args.end, "end") or day_for_now(settings).isoformat()
    _check_model_fits_columns(settings, end, with_champion=False)  # a training fits the config's columns
    ok, out = _run_flow(train_flow, settings, end=end)
    if not ok:
        print(f"FAILED: {out}", file=sys.stderr)
        return EXIT_FAILED
    if not out.trained:
        print(f"nothing trained: {out.reason}")
    else:
        print(f"model version {out.model_version} (run {out.run_id}): holdout error "
              f"{out.holdout_error:.5f}; {'promoted to champion' if out.promoted else 'not promoted'} ({out.reason})")
    return EXIT_OK


def cmd_promote(args) -> int:
    settings = _settings(args)
    from tasks.registry.client import Registry

    from .promote import promote_flow

    Registry(settings).model_version(args.version)  # an unknown version is bad usage: exit 2, before any flow
    ok, out = _run_flow(promote_flow, settings, version=args.version, end=_date(args.end, "end"))
    if not ok:
        print(f"FAILED: {out}", file=sys.stderr)
        return EXIT_FAILED
    print(out.reason if out.days_reencoded == 0 else
          f"version {out.model_version} is champion (was {out.previous_version or 'none'}): re-encoded "
          f"{out.days_reencoded} day(s) of the window first; logged in the champion history ({out.reason})")
    return EXIT_OK


def cmd_validate(args) -> int:
    from tasks.data.ingest import scan_partition
    from tasks.resources import Resources
    from tasks.validation import Reference, validate

    settings = _settings(args, features=False)
    out = Path(args.report_dir) if args.report_dir else None
    if out is not None:  # before any work: a folder that cannot be made fails in one line
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--report-dir {out}: cannot create the folder ({e.strerror or e})") from None
    res = Resources(settings)
    day = dt.date.fromisoformat(_date(args.date))
    part = scan_partition(res.raw, settings, day)
    _, champion, _ = res.registry.serving()
    report = validate(part, settings, Reference.of(champion) if champion else None)
    print(report.summary())
    if out is not None:
        (out / "result.json").write_text(report.to_json())
        for suite, html in report.docs.items():
            (out / f"data_docs_{suite}.html").write_text(html)
        print(f"report and Great Expectations Data Docs written to {out}/")
    return EXIT_OK if report.success else EXIT_FAILED


def cmd_backfill(args) -> int:
    settings = _settings(args, write=not args.dry_run)
    from tasks import promote, publish
    from tasks.resources import Resources

    from .backfill import backfill_flow, dask_runner_class

    if settings.backfill.task_runner == "dask":
        dask_runner_class()
    start, end = _date(args.start, "start"), _date(args.end, "end")
    _check_model_fits_columns(settings, end, with_champion=not args.retrain)
    res = Resources(settings)
    plan = publish.plan_backfill(res, dt.date.fromisoformat(start), dt.date.fromisoformat(end), args.force)
    if plan.undated:
        print(f"ignored folder(s) whose date does not parse: {plan.undated}")
    first_train = " (after retraining, which may re-encode the window)" if args.retrain else (
        f" (no champion yet: one is trained on the window ending {end} first)"
        if res.registry.champion() is None else "")
    for line in promote.status_lines(res, abandoned=False):
        print(line)
    print(f"plan{first_train}:")
    print("\n".join(f"{p.date}  {p.action:<5} {p.state}" for p in plan.days))
    if args.dry_run:
        return EXIT_OK
    ok, out = _run_flow(backfill_flow, settings, start=start, end=end, force=args.force, retrain=args.retrain)
    if isinstance(out, DaysFailed):
        out = out.outcomes
    elif not ok:
        print(f"FAILED: {out}", file=sys.stderr)
        return EXIT_FAILED
    print("\noutcomes:\n" + _format_days(out))
    worked = [o for o in out if o.seconds]
    print(f"cost: {len(worked)} day(s) of work here, {sum(o.seconds for o in worked):.1f} s of day time ("
          f"{settings.backfill.concurrency} at once) and {sum(o.cpu_seconds for o in worked):.1f} CPU s; per day "
          "and per training in MLflow (cost_* metrics), summed by latentfeed features")
    failed = [o for o in out if o.status == "failed"]
    for o in failed:
        print(f"\n{o.date} failed:\n{o.detail}")
    if failed:
        print(f"{len(failed)} of {len(out)} partition(s) failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_features(args) -> int:
    from tasks import promote
    from tasks.resources import Resources

    settings = _settings(args, raw=False, write=args.vacuum)
    res = Resources(settings)
    if args.history:
        from tasks.store.history import read_history

        moves = read_history(res.table)
        print(f"champion history of {settings.table_uri}" + ("" if moves.height else ": no move yet"))
        for m in moves.iter_rows(named=True):
            was = f"from v{m['previous_version']}" if m["previous_version"] is not None else "first champion"
            print(f"  {m['at'].isoformat(timespec='seconds')}  v{m['model_version']}  ({was})  {m['reason']}")
        return EXIT_OK
    ref = res.registry.champion()
    if args.vacuum:
        from tasks.store.lease import remove_expired

        if args.keep_versions < 1:
            raise ConfigError(f"--keep-versions must be at least 1, got {args.keep_versions}")
        protect = {r.version for r, _ in res.registry.versions_tagged(promote.STATE_TAG, promote.PENDING)}
        done = res.table.retire_versions(args.keep_versions, protect | ({ref.version} if ref else set()), args.force)
        leases = remove_expired(res.state, settings.schedule.lease_seconds)
        print(f"kept model version(s) {done.kept}; retired {done.versions or 'none'}; vacuum removed "
              f"{done.files_removed} file(s) and {done.partial_removed} partial write(s) of killed runs older "
              f"than {settings.features.retention_hours} h, and {leases} expired lease file(s)")
    slices = res.table.slices()
    if args.version is not None:
        slices = slices.filter(slices["model_version"] == args.version)
    if args.start:
        slices = slices.filter(slices["dt"] >= dt.date.fromisoformat(_date(args.start, "start")))
    if args.end:
        slices = slices.filter(slices["dt"] <= dt.date.fromisoformat(_date(args.end, "end")))
    print(f"table {settings.table_uri}; champion: "
          f"{f'{ref.name} version {ref.version}' if ref else 'none'}")
    for line in promote.status_lines(res):
        print(line)
    if slices.is_empty():
        print("nothing published")
        return EXIT_OK
    from tasks.cost import Cost

    costs, trainings = res.registry.run_costs()
    total = Cost(device="")
    for row in slices.iter_rows(named=True):
        cost = costs.get((row["model_version"], row["dt"].isoformat()))
        total = total + cost if cost else total
        spent = f"  cost={cost.wall_seconds:.1f}s/{cost.cpu_seconds:.1f}cpu-s" if cost else ""
        print(f"  model_version={row['model_version']}  dt={row['dt']}  rows={row['rows']}  "
              f"bytes={row['bytes']}  files={row['files']}  written={row['published_at']:%Y-%m-%dT%H:%M:%SZ}{spent}")
    print(f"cost of publishing these day(s): {total.summary()}" if total.device else
          "cost: not recorded for these day(s)")
    if trainings:
        print(f"cost of all {len(trainings)} training(s) of the dataset: {sum(trainings, Cost(device='')).summary()}")
    return EXIT_OK


def cmd_neighbours(args) -> int:
    import polars as pl

    from tasks.features.retrieval import neighbours

    settings = _settings(args, raw=False, write=False)
    pairs = [k.split("=", 1) for k in args.key]
    named = all(len(p) == 2 and p[0] in settings.dataset.key_columns for p in pairs)
    if len(args.key) == 1 and not named:
        key = args.key[0]  # the value of the one key column (it may hold "=")
    elif named:
        key = dict(pairs)
    else:
        raise ConfigError(f"--key {' --key '.join(args.key)}: give the value alone (one key column) or column=value "
                          "for each key column")
    found = neighbours(settings, key, args.k, _date(args.date), "champion" if args.version is None else args.version,
                       args.rerank)
    how = f", the nearest {args.rerank} re-ranked on their latents" if args.rerank else ""
    print(f"{found.height} nearest row(s) to {' '.join(args.key)} by Hamming distance of their codes{how}:")
    with pl.Config(tbl_rows=-1, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(found)
    return EXIT_OK


def cmd_deploy(args) -> int:
    from deployments.deploy import deploy
    from tasks.preflight import check_prefect_api
    from tasks.settings import load_settings

    check_prefect_api(load_settings(args.config))  # a server that is down: one line, not Prefect's traceback

    for line in deploy(Path(args.config)):
        print(line)
    return EXIT_OK


def cmd_demo(args) -> int:
    from tasks.data.sample import write_sample_dataset
    from tasks.settings import load_settings

    from .nightly import nightly_flow

    work = Path(args.workdir).resolve()
    if (work / "latentfeed.toml").exists():
        print(f"{work} already holds a demo; remove it or pass another --workdir", file=sys.stderr)
        return EXIT_USAGE
    start = dt.date.today() - dt.timedelta(days=args.days)
    print(f"writing {args.days} daily partitions of {args.rows} rows to {work / 'raw'} ...", flush=True)
    config = write_sample_dataset(work, start, args.days, args.rows, epochs=args.epochs)
    settings = load_settings(config)
    runs = []
    for i in range(args.days):
        day = (start + dt.timedelta(days=i)).isoformat()
        print(f"\n=== nightly run for {day} ===", flush=True)
        ok, out = _run_flow(nightly_flow, settings, date=day)
        if not ok:
            print(f"FAILED: {redact(str(out))}", file=sys.stderr)
            return EXIT_FAILED
        runs.append(out)
    print("\n" + _format_runs(runs))
    last = runs[-1]
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    print(f"""
config:         {config}
MLflow:         mlflow ui --backend-store-uri {tracking_uri}   (model {last.model_version}, run {last.run_id})
feature table:  {last.table_uri}

read it:
  polars:  pl.read_delta("{last.table_uri}").filter(pl.col("model_version") == {last.model_version})
  duckdb:  from tasks.features import duckdb_connection
           duckdb_connection().sql("SELECT * FROM delta_scan('{last.table_uri}') WHERE model_version = {last.model_version}")""")
    return EXIT_OK


def _format_days(outcomes: list) -> str:
    """Each day's outcome, a line each: date, status, time, and the first line of what happened."""
    return "\n".join(f"{o.date}  {o.status:<8} {o.seconds:6.1f} s  {o.detail.splitlines()[0]}" for o in outcomes)


def _format_runs(runs: list) -> str:
    """The nightly results as the summary table the CLI prints."""
    lines = [f"{'date':<10}  {'rows in':>8}  {'rows out':>8}  {'anomalies':>9}  {'raw disk':>10}  {'feature disk':>12}  "
             f"{'raw memory':>10}  {'feature memory':>14}  model"]
    for r in runs:
        lines.append(f"{r.date:<10}  {r.rows_in:>8}  {r.rows_out:>8}  {r.anomalies:>9}  "
                     f"{r.raw_bytes:>10,}  {r.feature_bytes:>12,}  {r.raw_memory_bytes:>10,}  "
                     f"{r.feature_memory_bytes:>14,}  v{r.model_version}")
    total = {k: sum(getattr(r, k) for r in runs) for k in ("raw_bytes", "feature_bytes", "raw_memory_bytes",
                                                           "feature_memory_bytes")}
    last = runs[-1]
    lines.append(f"latent size {last.latent_dim} ({last.latent_dtype}); features / raw: "
                 f"{total['feature_bytes'] / max(total['raw_bytes'], 1):.2f} on disk, "
                 f"{total['feature_memory_bytes'] / max(total['raw_memory_bytes'], 1):.2f} in memory")
    lines += [f"{r.date}: first published the missed day(s) {r.caught_up}" for r in runs if r.caught_up]
    lines += [f"{r.date} validation warning(s): {r.warnings}" for r in runs if r.warnings]
    if last.val_error is not None:
        lines.append(f"held-out reconstruction error {last.val_error:.4f} vs PCA at the same size "
                     f"{last.pca_val_error:.4f} (ratio {last.val_error / last.pca_val_error:.2f}; "
                     "per-column normalised)")
    if last.val_mse is not None:
        lines.append(f"real columns, squared error in {last.error_unit} units: {last.val_mse:.4g} vs PCA's "
                     f"{last.pca_val_mse:.4g} (ratio {last.val_mse / last.pca_val_mse:.2f})")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="latentfeed", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_, config=True):
        sp = sub.add_parser(name, help=help_)
        if config:
            sp.add_argument("--config", required=True, type=Path, help="the TOML config file")
        sp.set_defaults(fn=fn)
        return sp

    d = add("demo", cmd_demo, "write a sample dataset and run the nightly flow over its days", config=False)
    d.add_argument("--workdir", default="latentfeed-demo")
    d.add_argument("--days", type=int, default=5)
    d.add_argument("--rows", type=int, default=30_000)
    d.add_argument("--epochs", type=int, help="cap training at this many passes (default: sized to the data)")
    add("run", cmd_run, "the nightly flow for one partition").add_argument(
        "--date", help="YYYY-MM-DD (default: yesterday in [schedule].timezone)")
    b = add("backfill", cmd_backfill, "every partition in a date range")
    b.add_argument("--start", required=True)
    b.add_argument("--end", required=True)
    b.add_argument("--force", action="store_true", help="re-publish partitions already published for the champion")
    b.add_argument("--retrain", action="store_true", help="train a challenger on the window ending at --end first")
    b.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    add("train", cmd_train, "train a challenger; promote it if it passes the gate").add_argument("--end")
    v = add("validate", cmd_validate, "validation only; prints the report")
    v.add_argument("--date", required=True)
    v.add_argument("--report-dir", help="also write the JSON result and GE Data Docs pages (HTML) here")
    f = add("features", cmd_features, "describe what is published")
    f.add_argument("--start")
    f.add_argument("--end")
    f.add_argument("--version", type=int)
    f.add_argument("--vacuum", action="store_true",
                   help="delete superseded model versions' rows (never the champion's) and vacuum old files")
    f.add_argument("--keep-versions", type=int, default=2, help="newest versions --vacuum keeps (default 2)")
    f.add_argument("--force", action="store_true",
                   help="--vacuum even when it deletes the only rows of some days (refused otherwise)")
    f.add_argument("--history", action="store_true", help="print the champion history: every move, when and why")
    pr = add("promote", cmd_promote, "make a registered version champion (forward or rollback): re-encode the "
                                      "window with it first, then move the alias")
    pr.add_argument("--version", type=int, required=True)
    pr.add_argument("--end", help="the window's last day (default: the newest raw partition)")
    nb = add("neighbours", cmd_neighbours, "the rows most similar to one row, by Hamming distance of their binary "
                                           "codes (needs [features].code_bits)")
    nb.add_argument("--key", required=True, action="append",
                    help="the row's key: its value, or column=value for each key column (repeat --key)")
    nb.add_argument("-k", type=int, default=10, help="how many neighbours (default 10)")
    nb.add_argument("--date", help="the day searched (default: the newest day of the version)")
    nb.add_argument("--version", type=int, help="the model version (default: the champion)")
    nb.add_argument("--rerank", type=int, default=0, metavar="N",
                    help="re-rank the N nearest by Hamming on their float latents (more of the true neighbours)")
    add("deploy", cmd_deploy, "register the Prefect deployments")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # The application's own console: set here, once, not by the library modules it uses.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no phoning home from the local API
    from tasks import runtime
    from tasks.limits import FILESYSTEM_LEASES

    # a temporary local API (no server configured) keeps training slots' leases on disk (see
    # tasks/limits.py), and may take more than Prefect's 20 s to start when commands start together
    os.environ.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", FILESYSTEM_LEASES)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    runtime.configure(quiet_failures=args.command not in ("features", "neighbours"))
    global _early_api
    _early_api = None  # started by _settings, for a command that runs a flow
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"config error: {redact(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except LatentfeedError as e:  # an unreachable store or unreadable table before any flow started
        print(f"FAILED: {redact(str(e))}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as e:  # a setting the model refuses (e.g. latent_dim too wide for the columns)
        print(f"error: {redact(str(e))}", file=sys.stderr)
        return EXIT_USAGE


def entry() -> None:
    """The ``latentfeed`` console command: ``main``, then exit without the interpreter's last garbage
    collections over everything torch, Great Expectations, MLflow and Prefect loaded (2-5 s of every
    command's wall time here). ``gc.freeze`` leaves exit handlers and normal teardown to run; only
    collecting cycles at exit is skipped. Tests call ``main`` instead, and keep collecting."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()

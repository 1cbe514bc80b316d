"""What tests share besides fixtures: the sample dataset, its days, bad raw files, servers as processes."""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.data.sample import write_sample_dataset
from tasks.settings import Settings, load_settings
from tasks.store.identity import ModelIdentity
from tasks.store.latents import LEVELS, latent_columns, read_quantisation
from tasks.store.table import FeatureTable

START = dt.date(2024, 3, 1)
DAYS = 2
ROWS = 3000


def make_dataset(root: Path, days: int = DAYS, rows: int = ROWS) -> Path:
    return write_sample_dataset(root, START, days, rows, epochs=3)


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def rewrite_partition(config: Path, i: int, fn) -> None:
    """Replace day ``i``'s raw parquet file by ``fn`` of its frame."""
    path = f"{load_settings(config).dataset.raw_uri}/dt={day(i)}/part-0.parquet"
    fn(pl.read_parquet(path)).write_parquet(path)


def set_config(config: Path, old: str, new: str) -> None:
    config.write_text(config.read_text().replace(old, new))


def slices(settings) -> pl.DataFrame:
    """What the feature table holds now, one row per (model_version, dt): read afresh (a FeatureTable
    keeps the table state it first read)."""
    return FeatureTable(settings).slices()


def published_days(config: Path) -> list[str]:
    return sorted(set(slices(load_settings(config))["dt"].cast(pl.Utf8).to_list()))


def copy_store(src: Path, dest: Path) -> Path:
    """Copy a dataset's folder (raw data, feature table and its state, MLflow's SQLite store and
    artifacts, config) to ``dest``; returns the copy's config.

    Relative paths in the config resolve against the copy, but MLflow keeps absolute artifact
    locations in its store (experiments.artifact_location, runs.artifact_uri, model_versions.source and
    storage_location, logged_models.artifact_location; params hold the config's resolved paths), as do
    the publish records beside the table: each text value naming ``src`` is rewritten to name ``dest``,
    so the copy never reads nor writes the original."""
    shutil.copytree(src, dest, dirs_exist_ok=True)  # copy2: raw files keep their mtimes, so their fingerprints
    old, new = str(src.resolve()), str(dest.resolve())
    with sqlite3.connect(dest / "mlflow.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f"WHERE typeof(\"{column}\") = 'text' AND instr(\"{column}\", ?) > 0", (old, new, old))
    db.close()
    for record in (dest / "features").glob("_latentfeed/*/published/*.json"):
        record.write_text(record.read_text().replace(old, new))
    return dest / "latentfeed.toml"


def add_days(root: Path, days: int, rows: int = ROWS) -> None:
    """Raw days 1 .. days - 1 beside a dataset's day 0, as ``make_dataset(root, days, rows)`` writes them."""
    if days <= 1:
        return
    with tempfile.TemporaryDirectory(prefix="latentfeed-days-") as tmp:
        write_sample_dataset(Path(tmp), START, days, rows, epochs=3)
        for i in range(1, days):
            shutil.move(Path(tmp) / "raw" / f"dt={day(i)}", root / "raw" / f"dt={day(i)}")


def fitted_reference(settings, i: int = 0):
    """What validation expects of later days once a champion trained on day ``i`` alone (as a first
    nightly's does): ``Reference.of`` a reducer fitted as ``latentfeed run`` fits it, in-process."""
    from tasks.data.ingest import feature_names, scan_partition
    from tasks.model.fit import fit
    from tasks.store.objects import open_storage
    from tasks.validation import Reference

    part = scan_partition(open_storage(settings.dataset.raw_uri), settings, dt.date.fromisoformat(day(i)))
    est, _ = fit(settings, part.frame.select(feature_names(part.columns)).collect(), part.columns, None,
                 lambda line: None)
    return Reference.of(est)


def _truncate(path: str) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])


# name -> (what spoils a raw parquet file, what the failure message must say)
BAD_FILES = {
    "string in a numeric column": (
        lambda p: pl.read_parquet(p).with_columns(pl.col("x_02").cast(pl.Utf8)).write_parquet(p), ["'x_02'", "type"]),
    "empty file": (lambda p: Path(p).write_bytes(b""), ["part-0.parquet is empty (0 bytes)"]),
    "truncated parquet": (_truncate, ["cannot read raw file", "part-0.parquet", "dt="]),
    "duplicate keys": (lambda p: pl.read_parquet(p).with_columns(pl.col("id").clip(upper_bound=pl.col("id").min() + 10))
                       .write_parquet(p), ["'id'", "unique"]),
    "a value beyond float32's range": (lambda p: pl.read_parquet(p).with_columns(
        pl.when(pl.col("id") % 100 == 7).then(1e39).otherwise(pl.col("x_01").cast(pl.Float64)).alias("x_01"))
        .write_parquet(p),
        ["'x_01'", "beyond float32's range", "'x_01': 1e+39"]),
    "a value that squashes its column's scale": (lambda p: pl.read_parquet(p).with_columns(
        pl.when(pl.col("id") % 1000 == 7).then(1e30).otherwise(pl.col("x_01").cast(pl.Float64)).alias("x_01"))
        .write_parquet(p), ["'x_01'", "[validation].max_value_share", "'x_01': 1e+30"]),
    "null keys": (lambda p: pl.read_parquet(p).with_columns(
        pl.when(pl.col("id") % 50 == 0).then(None).otherwise(pl.col("id")).alias("id")).write_parquet(p),
        ["'id'", "nulls", "{'id': None}"]),
    "a 2 in a binary column stored as float": (lambda p: pl.read_parquet(p).with_columns(
        pl.when(pl.col("id") % 50 == 0).then(2.0).otherwise(pl.col("flag_0").cast(pl.Float64)).alias("flag_0"))
        .write_parquet(p), ["'flag_0'", "binary values are 0 or 1", "'flag_0': 2.0"]),
}


TRACEBACK = re.compile(r'Traceback|File ".*/(flows|tasks)/')  # what a user must never see


def failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("FAILED:")]


def put_on_s3(root: Path, s3, config: Path, bucket: str = "lake", features: bool = True) -> None:
    """Upload root/raw to s3://{bucket}/raw/sample and point the config's raw (and features) there."""
    for f in (root / "raw").rglob("*.parquet"):
        s3.upload_file(str(f), bucket, f"raw/sample/{f.relative_to(root / 'raw').as_posix()}")
    text = config.read_text().replace('raw_uri = "raw"', f'raw_uri = "s3://{bucket}/raw/sample"')
    config.write_text(text.replace('uri = "features"', f'uri = "s3://{bucket}/features"') if features else text)


def put_features_on_s3(root: Path, s3, config: Path, bucket: str = "lake") -> None:
    """Move root/features (the feature table, its state and quarantine) to s3://{bucket}/features and
    point the config's [features].uri there: Delta's log names its files relative to the table."""
    local = root / "features"
    for f in local.rglob("*"):
        if f.is_file() and not f.name.startswith("."):  # not the local store's OS lock files
            s3.upload_file(str(f), bucket, f"features/{f.relative_to(local).as_posix()}")
    shutil.rmtree(local)
    set_config(config, 'uri = "features"', f'uri = "s3://{bucket}/features"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def process_group(cmd: list[str], log: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group, output to ``log``; always stop the whole group after.

    Servers and workers start children (uvicorn, flow-run subprocesses) that would outlive a
    terminated leader; SIGTERM first lets them close their databases and mark themselves offline.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        try:  # the leader may be gone while children it started still run
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout: float = 90) -> None:
    """Wait until ``url`` answers 200; fail with the end of the server's log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer in {timeout} s:\n{log_tail(log)}")
        time.sleep(0.25)


@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """A moto_server process on 127.0.0.1 and a free port (clients talk real HTTP to it); yields its URL."""
    port, log = free_port(), log_dir / "moto_server.log"
    url = f"http://127.0.0.1:{port}"
    with process_group([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                       log) as proc:
        wait_healthy(proc, url + "/moto-api/", log)
        yield url


@contextmanager
def small_disk(folder: Path, kib: int) -> Iterator[Path]:
    """``folder`` on a file system of its own of ``kib`` KiB (a tmpfs, mounted over it and unmounted
    after): a disk that fills up. Skips where this process may not mount (not root, no CAP_SYS_ADMIN)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave_bytes: int = 0) -> None:
    """Fill ``folder``'s file system until ``leave_bytes`` are left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while (left := shutil.disk_usage(folder).free - leave_bytes) > 0:
            os.write(fd, b"\0" * min(left, 1 << 20))
    except OSError:  # full
        pass
    finally:
        os.close(fd)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Folders' permissions apply from here on: root (which ignores them) acts as ``nobody``; anyone
    else is already bound by them."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


PREFECT = str(Path(sys.executable).with_name("prefect"))


def prefect_env(home: Path, **settings: str) -> dict[str, str]:
    """This environment with its own PREFECT_HOME (profiles, local storage) and no inherited API URL."""
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILE")}
    return env | {"PREFECT_HOME": str(home), **settings}


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A ``prefect server`` on a free port with a SQLite database under ``home``; yields its API URL.
    --no-services: no scheduler, late-run marker, event persister, ...: a run created by the client and
    executed by a worker needs only the API, and the machine has 2 cores."""
    port = free_port()
    env = prefect_env(home, PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
                      PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false")
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services"]
    log = home / "server.log"
    with process_group(cmd, log, env) as proc:
        url = f"http://127.0.0.1:{port}/api"
        wait_healthy(proc, f"{url}/health", log)
        yield url


def prefect_worker(api: str, pool: str, folder: Path, **env: str) -> tuple[list[str], Path, dict[str, str]]:
    """A process worker's command, log and environment (its own PREFECT_HOME under ``folder``): it must
    find the pool ``deploy`` created, not make its own."""
    return ([PREFECT, "worker", "start", "--pool", pool, "--type", "process", "--no-create-pool-if-not-found"],
            folder / f"{pool}.log",
            prefect_env(folder / f"prefect-{pool}", PREFECT_API_URL=api, PREFECT_WORKER_QUERY_SECONDS="1", **env))


def assert_stored(table: pl.DataFrame, served, settings: Settings, columns: list[str], tol: float = 1e-5) -> None:
    """``table`` (one version's rows as ``read_features`` returns them) holds the served model's answer
    (a pandas or polars frame, row for row) as the table stores it: int8 latents on the version's grid
    (within half a step of the served value, clipped to the grid), the score of a compact type to bfloat16's
    precision (about 3 digits), float32 to ``tol``."""
    t = FeatureTable(settings)
    dtype = t.latent_dtype()
    grid = read_quantisation(t.state, table["model_version"][0]) if dtype == "int8" else None
    for c in columns:
        got, want = np.asarray(served[c], np.float64), table[c].to_numpy().astype(np.float64)
        if grid is not None and latent_columns([c]):
            i = int(c.rsplit("_", 1)[1])
            low, high = grid.offset[i] - LEVELS * grid.scale[i], grid.offset[i] + LEVELS * grid.scale[i]
            np.testing.assert_allclose(want, np.clip(got, low, high), rtol=0, atol=grid.scale[i] / 2 + tol, err_msg=c)
        elif c == "anomaly_score" and dtype != "float32":
            np.testing.assert_allclose(want, got, rtol=2**-8 + tol, atol=tol, err_msg=c)
        else:
            np.testing.assert_allclose(want, got, rtol=tol, atol=tol, err_msg=c)


def made_model(latents: int = 1, run: str = "run-test") -> ModelIdentity:
    """The identity of the model a test's hand-made rows stand for (``latents`` columns wide)."""
    return ModelIdentity("test-ae", run, latents)


@contextmanager
def running_mlflow(work: Path, artifacts: str | None = None, **env: str) -> Iterator[str]:
    """A running ``mlflow server`` on 127.0.0.1 (SQLite in ``work``, its cwd, so no ./mlartifacts lands in
    the repo; artifacts served from ``artifacts``, default a folder in ``work``); yields its URL and always
    stops it. No background job runner: the machine has 2 cores and nothing here uses it."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "server.log"
    full = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    full.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}", "--serve-artifacts",
           "--artifacts-destination", artifacts or str(work / "artifacts")]
    url = f"http://127.0.0.1:{port}"
    with process_group(cmd, log, full, cwd=work) as proc:
        wait_healthy(proc, url + "/health", log)
        yield url

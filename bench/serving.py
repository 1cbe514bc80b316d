"""Online serving: the champion's pyfunc in process and behind ``mlflow models serve``, one row per call
and 10,000-row batches, against the targets of #28 item 5 (in process one row p50 <= 2 ms and p99 <= 5 ms,
served one row p50 <= 5 ms, 10,000-row batches >= 100,000 rows/s); the model's load time; and the
refusals the contract asks for (text in a real column, a null where training had none) over HTTP.

A sample dataset (20,000 rows of 24 real and 8 binary columns) is published with the CLI's defaults
first, so the served model is what a nightly registers. Requests are prepared before the clock starts
(the client's JSON encoding is not timed); the served one-row calls reuse one connection (keep-alive),
as a client with a connection pool does, and are also timed opening a connection per request.
``--signatures`` also times the champion saved with the input schemas MLflow could enforce (see
``tasks.registry.client.signature``). A served batch is bound by MLflow's scoring server, not the model:
it decodes the request's JSON twice and writes its answer with Python's pure-Python JSON encoder.

    .venv/bin/python bench/serving.py [--single 500] [--batch 10000] [--batches 10] [--signatures]
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl

DAY = dt.date(2024, 3, 1)
TARGETS = {"in process, one row p50": 2.0, "in process, one row p99": 5.0, "served, one row p50": 5.0}  # ms, at most
RATE_TARGET = 100_000  # rows/s of a 10,000-row batch, at least


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


def split_json(frame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def cold_load(uri: str, env: dict[str, str]) -> tuple[float, float]:
    """Seconds a fresh process takes to import mlflow, then to load the model (its imports included)."""
    code = ("import time; t0 = time.perf_counter(); import mlflow; t1 = time.perf_counter(); "
            f"mlflow.pyfunc.load_model({uri!r}); t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    imported, loaded = map(float, out.stdout.split()[-2:])
    return imported, loaded


class Served:
    """``mlflow models serve`` on a free port, stopped with its process group."""

    def __init__(self, uri: str, env: dict[str, str]):
        bin_dir = str(Path(sys.executable).parent)
        self.port = 5000 + os.getpid() % 1000
        started = time.perf_counter()
        self.proc = subprocess.Popen([f"{bin_dir}/mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
                                      "-h", "127.0.0.1", "-p", str(self.port)],
                                     env={**env, "PATH": f"{bin_dir}:{env['PATH']}"}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(480):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"mlflow models serve exited with {self.proc.returncode}")
                time.sleep(0.25)
        self.start_seconds = time.perf_counter() - started
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):  # the server closes a connection idle for 5 s: open a new one then
            try:
                self.conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_fresh(self, body: bytes) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    def close(self) -> None:
        self.conn.close()
        os.killpg(self.proc.pid, 15)
        self.proc.wait(30)


def timed(fn, items, warm: int = 20) -> list[float]:
    for item in items[:warm]:
        fn(item)
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - started)
    return out


def line(name: str, p50: float, p99: float | None = None, rate: float | None = None) -> None:
    text = f"{name:44s} p50 {p50:8.2f} ms"
    text += f"  p99 {p99:8.2f} ms" if p99 is not None else " " * 17
    text += f"  {rate:12,.0f} rows/s" if rate is not None else ""
    print(text)


def refusals(served: Served, raw: pl.DataFrame) -> None:
    """A row with text in a real column and one with a null where training had none: HTTP 400 naming it."""
    row = raw.head(1).to_pandas()
    cases = {"text '25' in x_00": row.astype({"x_00": object}).assign(x_00="25"),
             "null in flag_0": row.astype({"flag_0": object}).assign(flag_0=None)}
    for name, frame in cases.items():
        status, body = served.post(split_json(frame))
        message = json.loads(body).get("message", "") if status != 200 else ""
        named = "named" if name.split()[-1] in message else "NOT NAMED"
        print(f"refusal, {name:20s} HTTP {status}, column {named}: {message.split('Error:')[-1].strip()[:150]}")


def signatures(uri: str, singles: list, batches: list) -> None:
    """The champion saved again with each input schema MLflow could enforce: its cost and what it does to
    an int64 real column (validation takes one)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from ae_models import AutoencoderReducer
    from tasks.registry import client as registry

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        reducer = AutoencoderReducer.load(local / "artifacts" / "reducer")
        real, binary = reducer.preprocessor_.real, reducer.preprocessor_.binary
        base = registry.signature(reducer, ["id"])
        typed = Schema([ColSpec(AnyType(), "id", required=False), *(ColSpec("double", c) for c in real),
                        *(ColSpec(AnyType(), c) for c in binary)])
        variants = {"none (registered)": base, "any, required": registry.signature(reducer, ["id"], inputs=True),
                    "double for real, any for binary": ModelSignature(inputs=typed, outputs=base.outputs)}
        for name, sig in variants.items():
            path = Path(tmp) / name.split()[0].strip(",")
            mlflow.pyfunc.save_model(path, python_model=str(local / "pyfunc.py"),
                                     artifacts={"reducer": str(local / "artifacts" / "reducer")},
                                     code_paths=[str(local / "code" / "ae_models")], signature=sig,
                                     model_config={"keys": ["id"]})
            model = mlflow.pyfunc.load_model(str(path))
            one = timed(model.predict, singles)
            many = timed(model.predict, batches, warm=2)
            try:
                model.predict(singles[0].assign(x_00=25))  # int64
                ints = "taken"
            except Exception as e:  # noqa: BLE001  (what MLflow says, whatever it raises)
                ints = f"REFUSED ({str(e).split('Error:')[-1].strip()[:70]})"
            line(f"input schema: {name}", *percentiles(one), len(batches[0]) * len(many) / sum(many))
            print(f"{'':44s} an int64 real column: {ints}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=500, help="one-row calls (distinct rows)")
    ap.add_argument("--batch", type=int, default=10_000, help="rows per batched call")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--signatures", action="store_true", help="also time the input schemas MLflow could enforce")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    from flows.cli import main as cli
    from tasks.data.sample import write_sample_dataset
    from tasks.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        rows = max(20_000, args.batch)
        config = write_sample_dataset(Path(tmp), DAY, 1, rows)
        assert cli(["run", "--config", str(config), "--date", DAY.isoformat()]) == 0
        s = load_settings(config)
        raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={DAY.isoformat()}/*.parquet")
        singles = [raw.slice(i, 1).to_pandas() for i in range(args.single)]
        distinct = [raw.slice(i * args.batch, args.batch).to_pandas() for i in range(rows // args.batch)]
        batches = [distinct[i % len(distinct)] for i in range(args.batches)]

        import mlflow

        os.environ["MLFLOW_TRACKING_URI"] = s.mlflow.tracking_uri
        uri = f"models:/{s.mlflow.registered_model}@champion"
        imported, loaded = cold_load(uri, dict(os.environ))
        started = time.perf_counter()
        model = mlflow.pyfunc.load_model(uri)
        warm_load = time.perf_counter() - started
        print(f"{os.cpu_count()} CPU cores; {raw.width - 1} feature columns, latent_dim {s.model.latent_dim}; "
              f"torch {__import__('torch').get_num_threads()} threads")
        print(f"model load, fresh process: {imported + loaded:.2f} s (import mlflow {imported:.2f} s, load_model "
              f"{loaded:.2f} s with torch, scikit-learn and the registry lookup); in a warm process {warm_load:.2f} s")

        results = {}
        one = timed(model.predict, singles)
        results["in process, one row p50"], results["in process, one row p99"] = percentiles(one)
        line("in process, one row", *percentiles(one))
        many = timed(model.predict, batches, warm=2)
        rate = args.batch * len(many) / sum(many)
        line(f"in process, {args.batch:,} rows", percentiles(many)[0], None, rate)

        served = Served(uri, dict(os.environ))
        try:
            print(f"mlflow models serve answered /ping {served.start_seconds:.1f} s after it started")
            bodies = [split_json(f) for f in singles]
            keep = timed(served.post, bodies)
            results["served, one row p50"], served_p99 = percentiles(keep)
            line("served, one row (keep-alive)", results["served, one row p50"], served_p99)
            fresh = timed(served.post_fresh, bodies)
            line("served, one row (a connection per request)", *percentiles(fresh))
            big = [split_json(f) for f in batches]
            served_many = timed(served.post, big, warm=2)
            served_rate = args.batch * len(served_many) / sum(served_many)
            line(f"served, {args.batch:,} rows", percentiles(served_many)[0], None, served_rate)
            ratio = results["served, one row p50"] / results["in process, one row p50"]
            print(f"served / in process p50: {ratio:.1f}x one row, "
                  f"{percentiles(served_many)[0] / percentiles(many)[0]:.1f}x {args.batch:,} rows")
            refusals(served, raw)
        finally:
            served.close()

        for name, limit in TARGETS.items():
            verdict = "met" if results[name] <= limit else "MISSED"
            print(f"target {name} <= {limit:g} ms: {results[name]:.2f} ms, {verdict}")
        print(f"target in process {args.batch:,}-row batches >= {RATE_TARGET:,} rows/s: {rate:,.0f}, "
              f"{'met' if rate >= RATE_TARGET else 'MISSED'}")
        print(f"(served {args.batch:,}-row batches: {served_rate:,.0f} rows/s, "
              f"{'at or above' if served_rate >= RATE_TARGET else 'below'} the same rate)")
        if args.signatures:
            signatures(uri, singles, batches)


if __name__ == "__main__":
    main()

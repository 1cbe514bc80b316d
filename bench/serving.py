"""Online encoding latency: the champion served by ``mlflow models serve`` vs the same pyfunc called in
process (the floor HTTP and JSON add to), one row per request and batches of rows.

A sample dataset (24 real and 8 binary columns) is published with the CLI's defaults first, so the
served model is what a nightly registers.

    .venv/bin/python bench/serving.py [--single 300] [--batch 1000] [--batches 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl

DAY = dt.date(2024, 3, 1)


def post(url: str, frame: pl.DataFrame) -> float:
    body = json.dumps({"dataframe_split": json.loads(frame.to_pandas().to_json(orient="split", index=False))}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}),
                                timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def timed(fn, frames: list[pl.DataFrame]) -> list[float]:
    out = []
    for f in frames:
        out.append(fn(f))
    return out


def report(name: str, seconds: list[float], rows: int) -> float:
    p50, p95 = statistics.median(seconds), sorted(seconds)[int(0.95 * (len(seconds) - 1))]
    rate = rows * len(seconds) / sum(seconds)
    print(f"{name:34s} p50 {p50 * 1000:8.2f} ms  p95 {p95 * 1000:8.2f} ms  {rate:10,.0f} rows/s")
    return p50


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", type=int, default=300, help="one-row requests")
    ap.add_argument("--batch", type=int, default=1000, help="rows per batched request")
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flows.cli import main as cli
    from tasks.data.sample import write_sample_dataset
    from tasks.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        config = write_sample_dataset(Path(tmp), DAY, 1, 20_000)
        assert cli(["run", "--config", str(config), "--date", DAY.isoformat()]) == 0
        s = load_settings(config)
        raw = pl.read_parquet(f"{s.dataset.raw_uri}/dt={DAY.isoformat()}/*.parquet")
        singles = [raw.slice(i, 1) for i in range(args.single)]
        batches = [raw.slice(i * args.batch, args.batch) for i in range(args.batches)]

        import mlflow

        os.environ["MLFLOW_TRACKING_URI"] = s.mlflow.tracking_uri
        model = mlflow.pyfunc.load_model(f"models:/{s.mlflow.registered_model}@champion")
        in_process = lambda f: (t := time.perf_counter(), model.predict(f.to_pandas()), time.perf_counter() - t)[2]
        timed(in_process, singles[:20])  # warm up
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        port = 5000 + os.getpid() % 1000
        server = subprocess.Popen([f"{bin_dir}/mlflow", "models", "serve", "-m", f"models:/{s.mlflow.registered_model}"
                                   "@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"{url}/ping", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.5)
            served = lambda f: post(f"{url}/invocations", f)
            timed(served, singles[:20])  # warm up
            print(f"{os.cpu_count()} CPU cores; {raw.width - 1} feature columns, "
                  f"latent_dim {s.model.latent_dim}")
            base1 = report("in process, one row", timed(in_process, singles), 1)
            http1 = report("mlflow models serve, one row", timed(served, singles), 1)
            baseb = report(f"in process, {args.batch} rows", timed(in_process, batches), args.batch)
            httpb = report(f"mlflow models serve, {args.batch} rows", timed(served, batches), args.batch)
            print(f"served/in-process p50: {http1 / base1:.1f}x one row, {httpb / baseb:.1f}x batched")
        finally:
            os.killpg(server.pid, 15)
            server.wait(30)


if __name__ == "__main__":
    main()

"""Peak memory of one partition's validate -> encode -> publish, at 1M and 10M rows x 64 columns.

Each size runs in a fresh process doing what the nightly flow's tasks do (scan lazily, profile and
validate with Great Expectations, stream batches through the encoder into one Delta commit) and
reports its peak RSS beside the baseline: the partition's size when collected into memory. The
target is a peak under 2 GiB that does not grow with the row count.

    .venv/bin/python bench/ingest_memory.py [--rows 1000000 10000000] [--cols 64]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATE = dt.date(2024, 1, 1)
CONFIG = """\
[dataset]
name = "bench"
raw_uri = "raw"
keys = ["id"]
real = ["x_*"]

[model]
latent_dim = 16

[features]
uri = "features"
table = "bench_latent"

[mlflow]
registered_model = "bench"
"""


def write_partition(root: Path, rows: int, cols: int, chunk: int = 1_000_000) -> None:
    """Write the raw partition a million rows at a time (the writer itself stays small)."""
    folder = root / "raw" / f"dt={DATE.isoformat()}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(8, cols)).astype(np.float32)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        X = np.tanh(rng.normal(size=(n, 8)).astype(np.float32) @ mix)
        table = pa.table({"id": np.arange(start, start + n, dtype=np.int64),
                          **{f"x_{i:02d}": X[:, i] for i in range(cols)}})
        writer = writer or pq.ParquetWriter(folder / "part-0.parquet", table.schema)
        writer.write_table(table, row_group_size=256_000)
    writer.close()
    (root / "latentfeed.toml").write_text(CONFIG)


def child(root: Path) -> None:
    """The measured process: the same building blocks the nightly flow's tasks call."""
    from ae_models import AutoencoderReducer
    from tasks.cost import Meter
    from tasks.model.encode import EncodedBatches
    from tasks.data.ingest import even_sample, scan_partition
    from tasks.settings import load_settings
    from tasks.store.objects import open_storage
    from tasks.store.identity import ModelIdentity
    from tasks.store.table import FeatureTable
    from tasks.validation import validate

    settings = load_settings(root / "latentfeed.toml")
    t0, stage = time.perf_counter(), Meter()  # each stage's own peak, beside the whole process's
    part = scan_partition(open_storage(settings.dataset.raw_uri), settings, DATE)
    report = validate(part, settings)
    assert report.success, report.summary()
    t1, validate_peak = time.perf_counter(), stage.cost().peak_rss_bytes
    sample = even_sample(part.frame.select(part.feature_columns), report.rows, 50_000)
    est = AutoencoderReducer(latent_dim=16, hidden=(64, 32), epochs=2, seed=0).fit(sample)
    t2, stage = time.perf_counter(), Meter()
    pub = FeatureTable(settings).replace_slice(EncodedBatches(est, part.frame, ["id"], 1), 1, DATE,
                                               {"bench": "ingest_memory"}, ModelIdentity("bench", "bench", 16), 1)
    t3, publish_peak = time.perf_counter(), stage.cost().peak_rss_bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": pub.rows, "peak_rss": peak, "validate_s": t1 - t0, "fit_s": t2 - t1,
                      "encode_publish_s": t3 - t2, "validate_peak": validate_peak, "publish_peak": publish_peak}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--cols", type=int, default=64)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child)
    print(f"one partition of N rows x {a.cols} float32 columns + int64 id; validate, then encode and publish "
          "in streamed batches; each N in a fresh process")
    print(f"{'rows':>12} {'in memory (baseline)':>21} {'peak RSS':>10} {'ratio':>6} {'validate':>9} "
          f"{'encode+publish':>15}   peak in validate, in encode+publish")
    for rows in a.rows:
        with tempfile.TemporaryDirectory() as tmp:
            write_partition(Path(tmp), rows, a.cols)
            out = subprocess.run([sys.executable, __file__, "--child", tmp], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["rows"] == rows
            in_memory = rows * (a.cols * 4 + 8)
            print(f"{rows:>12,} {in_memory / 2**30:>17.2f} GiB {r['peak_rss'] / 2**30:>6.2f} GiB "
                  f"{r['peak_rss'] / in_memory:>6.2f} {r['validate_s']:>8.1f}s {r['encode_publish_s']:>14.1f}s   "
                  f"{r['validate_peak'] / 2**30:.2f} GiB, {r['publish_peak'] / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()

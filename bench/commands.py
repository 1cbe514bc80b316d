"""Read-only commands: how long `latentfeed --help`, `features`, `features --history` and `neighbours`
take as users run them (a fresh process each), beside a bare script that computes the same answer with
the libraries directly (deltalake, polars, numpy) in a fresh process.

The sample dataset (3 days of 30,000 rows) is published first with 64-bit codes.

    .venv/bin/python bench/commands.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tasks.data.sample import write_sample_dataset  # noqa: E402

CLI = str(Path(sys.executable).with_name("latentfeed"))
START, DAYS = dt.date(2024, 1, 1), 3

BARE = {
    "--help": "import argparse; argparse.ArgumentParser(prog='latentfeed').print_help()",
    "features": ("import polars as pl; from deltalake import DeltaTable; "
                 "t = DeltaTable('{table}'); print(pl.DataFrame(t.get_add_actions(flatten=True)).height)"),
    "features --history": ("import polars as pl; from deltalake import DeltaTable; "
                           "print(pl.from_arrow(DeltaTable('{history}').to_pyarrow_table()))"),
    "neighbours": ("import numpy as np, polars as pl; d = pl.read_delta('{table}').filter(pl.col('dt') == "
                   "pl.col('dt').max()); c = np.frombuffer(b''.join(d['code'].to_list()), np.uint8).reshape(d.height, -1); "
                   "x = np.unpackbits(c ^ c[0], axis=1).sum(1); print(d[np.argsort(x, kind='stable')[1:11]]['id'])"),
}


def seconds(cmd: list[str], repeat: int) -> float:
    """The median wall time of ``cmd`` over ``repeat`` fresh processes."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = write_sample_dataset(work, START, DAYS, 30_000)
        config.write_text(config.read_text().replace('table = "sample_latent"', 'table = "sample_latent"\ncode_bits = 64'))
        last = (START + dt.timedelta(days=DAYS - 1)).isoformat()
        subprocess.run([CLI, "backfill", "--config", str(config), "--start", START.isoformat(), "--end", last],
                       check=True, capture_output=True)
        table, history = work / "features" / "sample_latent", work / "features" / "_latentfeed" / "sample_latent" / "history"
        commands = {"--help": [CLI, "--help"], "features": [CLI, "features", "--config", str(config)],
                    "features --history": [CLI, "features", "--config", str(config), "--history"],
                    "neighbours": [CLI, "neighbours", "--config", str(config), "--key", str((DAYS - 1) * 10_000_000)]}
        for name, cmd in commands.items():
            ours = seconds(cmd, args.repeat)
            bare = seconds([sys.executable, "-c", BARE[name].format(table=table, history=history)], args.repeat)
            print(f"latentfeed {name:<20} {ours:5.2f} s; bare script {bare:5.2f} s ({ours / bare:.1f}x)", flush=True)


if __name__ == "__main__":
    main()

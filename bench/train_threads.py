"""Does a default training keep its speed beside busy neighbours? Fit time of
``AutoencoderReducer(latent_dim=8)`` with torch's own thread count (one per core) against the estimator's
default (``n_threads="auto"``) and one thread, each alone (after the load average settles) and beside as
many busy CPU-bound processes as the machine has cores, started a second before and stopped in the same
run, on a narrow and a wide table.

Each fit runs in a fresh process, so no thread pool carries over. Prints one JSON line per case.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np, torch
from ae_models import AutoencoderReducer
rows, cols, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
X = (rng.normal(size=(rows, 8)) @ rng.normal(size=(8, cols)) + 0.1 * rng.normal(size=(rows, cols))).astype("float32")
kw = {} if threads == "torch" else {"n_threads": threads if threads == "auto" else int(threads)}
t = time.perf_counter()
est = AutoencoderReducer(latent_dim=8, **kw).fit(X)
print(json.dumps({"fit_s": time.perf_counter() - t, "steps": est.plan_["max_steps"], "threads_used": est.n_threads_}))
"""

SPIN = "while True: pass"


def fit(rows: int, cols: int, threads: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(cols), threads], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle(limit_s: float = 120) -> None:
    """Wait until the load average no longer counts the last busy phase (the estimator reads it)."""
    end = time.time() + limit_s
    while time.time() < end and os.getloadavg()[0] >= 0.8:
        time.sleep(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", default="20000x32,50000x256")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    for table in args.tables.split(","):
        rows, cols = map(int, table.split("x"))
        result = {"table": table, "cores": cores}
        for busy in (False, True):
            if not busy:
                settle()
            neighbours = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(cores if busy else 0)]
            try:
                time.sleep(1 if busy else 0)
                for threads in ("torch", "auto", "1"):
                    got = fit(rows, cols, threads)
                    result[f"{threads}_{'busy' if busy else 'alone'}_s"] = round(got["fit_s"], 2)
                    result["auto_threads"] = got["threads_used"] if threads == "auto" else result.get("auto_threads")
            finally:
                for n in neighbours:
                    n.kill()
                    n.wait()
        for threads in ("torch", "auto", "1"):
            result[f"{threads}_busy_over_alone"] = round(result[f"{threads}_busy_s"] / result[f"{threads}_alone_s"], 2)
        result["auto_alone_over_torch_alone"] = round(result["auto_alone_s"] / result["torch_alone_s"], 2)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""The reader API ML teams import stays light: no torch, Prefect or Great Expectations, so it works
where those are not installed and imports in well under a second."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "prefect", "great_expectations", "mlflow", "sklearn")


def test_the_reader_api_imports_nothing_heavy():
    code = ("import sys, time; t = time.perf_counter(); "
            "from tasks.features import read_features, training_set, duckdb_connection; "
            "print(time.perf_counter() - t); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[1] == "", f"importing the reader API loaded {out[1]}"


def test_the_building_blocks_load_torch_only_to_train_or_encode():
    code = ("import sys; import tasks.promote, tasks.publish, tasks.resources, tasks.validation; "
            "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"


def test_the_read_only_commands_load_no_prefect_torch_or_great_expectations():
    """What `latentfeed features` and `neighbours` import, dates parsed included (they answer in seconds)."""
    code = ("import sys; from flows import cli; cli._date('2024-01-01'); "
            "import tasks.promote, tasks.resources, tasks.cost, tasks.store.history, tasks.features.retrieval; "
            "print(','.join(m for m in ('prefect', 'torch', 'great_expectations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"the read-only commands loaded {out}"

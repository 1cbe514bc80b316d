"""Backfill over a range with bad days (validated in batches), and deployment registration against the Prefect API."""
from __future__ import annotations

import asyncio
import json
import time

import polars as pl
import pytest
from prefect.client.orchestration import get_client

from flows.cli import main
from tasks import steps
from tasks.errors import IngestError, StepFailed
from tasks.registry.client import Registry
from tasks.resources import Resources
from tasks.settings import load_settings

from tests.helpers import day, free_port, make_dataset, rewrite_partition, slices


async def _latest_artifact(key: str) -> dict:
    # Straight to the REST API: this Prefect client sends nulls for unset filter fields, which its server refuses.
    async with get_client() as client:
        response = await client._client.post("/artifacts/filter", json={
            "artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1, "offset": 0})
        return response.json()[0]


def test_backfill_skips_published_and_continues_past_a_bad_day(with_champion, capsys):
    config = with_champion(days=3)  # day 0 published by the champion its nightly trained
    s = load_settings(config)
    bad = f"{s.dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    pl.read_parquet(bad).with_columns(pl.lit(7).alias("flag_2")).write_parquet(bad)
    capsys.readouterr()
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(3), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{day(0)}  skip  published by champion v1" in out and f"{day(1)}  run   not published" in out
    assert f"{day(3)}  fail  no raw partition" in out and "outcomes" not in out
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0)]

    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(2)]) == 1
    out, err = capsys.readouterr()
    assert f"{day(0)}  skipped" in out and f"{day(2)}  done" in out
    assert f"{day(1)}  failed" in out and "flag_2" in out and "1 of 3 partition(s) failed" in err
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0), day(2)]
    assert "cost: 1 day(s) of work here" in out  # the day published; the failed and the skipped one cost nothing

    publishes, trainings = Registry(s).run_costs()  # what each run cost, in MLflow
    assert set(publishes) == {(1, day(0)), (1, day(2))} and len(trainings) == 1
    for cost in [*publishes.values(), *trainings]:
        assert cost.wall_seconds > 0 and cost.cpu_seconds > 0 and cost.peak_rss_bytes > 2**27
        assert cost.gpu_seconds == 0 and cost.device.startswith("cpu (")
    assert main(["features", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("cost=") == 2 and "cost of publishing these day(s): " in out
    assert "cost of all 1 training(s) of the dataset: " in out and " GiB on cpu (" in out

    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(1), "--dry-run"]) == 0
    assert f"{day(1)}  run   failed validation last time (report: " in capsys.readouterr().out

    artifact = asyncio.run(_latest_artifact("latentfeed-sample-backfill"))
    assert {r["date"]: r["status"] for r in json.loads(artifact["data"])} == {
        day(0): "skipped", day(1): "failed", day(2): "done"}


def test_deploy_registers_pools_and_scheduled_deployments(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    assert main(["deploy", "--config", str(config)]) == 0
    assert "sample-nightly on pool latentfeed-cpu, cron '0 2 * * *' (UTC)" in capsys.readouterr().out

    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            dep = await client.read_deployment_by_name("latentfeed-nightly/sample-nightly")
            pool = await client.read_work_pool("latentfeed-gpu")
            train = await client.read_deployment_by_name("latentfeed-train/sample-train")
            return dep, pool, train

    dep, pool, train = asyncio.run(read())
    assert dep.parameters == {"config": str(config.resolve())}
    assert dep.schedules and dep.schedules[0].schedule.cron == "0 2 * * *"
    assert pool.type == "process" and train.work_pool_name == "latentfeed-gpu"


def test_deploy_with_the_prefect_api_down_fails_in_one_line(tmp_path, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    config = make_dataset(tmp_path, days=1)
    down = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    started = time.monotonic()
    with temporary_settings({PREFECT_API_URL: down}):
        assert main(["deploy", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"FAILED: the Prefect API {down} does not answer") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and time.monotonic() - started < 30


def test_gpu_pool_handoff_without_a_deployment_is_a_clear_failure(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text().replace('name = "sample"', 'name = "undeployed"')
                      + "\n[schedule]\ntrain_on_gpu_pool = true\n")
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    err = capsys.readouterr().err
    assert "deployment latentfeed-train/undeployed-train is not registered" in err and "latentfeed deploy" in err
    assert slices(load_settings(config)).is_empty()


def test_gpu_pool_handoff_nobody_picks_up_fails_in_bounded_time(tmp_path, capsys):
    config = make_dataset(tmp_path, days=1)
    config.write_text(config.read_text().replace('name = "sample"', 'name = "no-gpu"')
                      + "\n[schedule]\ntrain_on_gpu_pool = true\ntrain_timeout_minutes = 0.05\n")
    assert main(["deploy", "--config", str(config)]) == 0  # the train deployment exists; no worker runs it
    capsys.readouterr()
    started = time.monotonic()
    assert main(["run", "--config", str(config), "--date", day(0)]) == 1
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "pool latentfeed-gpu did not pick up the training" in err and "no worker is online" in err
    assert "prefect worker start --pool latentfeed-gpu" in err
    assert slices(load_settings(config)).is_empty()

    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["no-gpu-train"])))
    assert runs and all(r.state.is_cancelled() for r in runs)  # no worker starting later trains it


def test_days_a_backfill_publishes_by_promoting_its_own_training_are_done_not_skipped(tmp_path, capsys):
    config = make_dataset(tmp_path, days=2, rows=500)
    assert main(["backfill", "--config", str(config), "--start", day(0), "--end", day(1)]) == 0
    out = capsys.readouterr().out.split("outcomes:")[1]
    for i in (0, 1):
        assert f"{day(i)}  done        0.0 s  published with version 1 by this backfill's promotion" in out
    assert "skipped" not in out


def test_a_day_whose_files_changed_after_its_batch_was_validated_is_validated_again(with_champion):
    """A backfill validates its days in batches before publishing them: the report used is the one of
    the files published, never of files that were replaced in between."""
    config = with_champion(days=3, rows=500)
    s = load_settings(config)
    res = Resources(s)
    ref = res.registry.champion()
    batch = steps.validate_batch(res, [day(1), day(2), day(5)], ref)  # the tasks, run outside a flow
    assert batch[day(1)].report.success and batch[day(2)].report.success
    assert "no" in batch[day(5)] and day(5) in batch[day(5)]  # no such partition: why, for that day only
    assert 0 < batch[day(1)].cost.wall_seconds < 60

    rewrite_partition(config, 1, lambda f: f.with_columns(pl.lit(7).alias("flag_2")))  # after the batch judged it
    with pytest.raises(StepFailed, match="flag_2"):
        steps.publish_partition(res, day(1), ref, False, batch)
    assert steps.publish_partition(res, day(2), ref, False, batch).status == "done"
    with pytest.raises(IngestError, match=day(5)):
        steps.publish_partition(res, day(5), ref, False, batch)
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0), day(2)]


def test_a_corrupt_file_fails_its_own_day_not_the_days_validated_with_it(with_champion, capsys):
    config = with_champion(days=3, rows=500)
    s = load_settings(config)
    path = f"{s.dataset.raw_uri}/dt={day(1)}/part-0.parquet"
    data = bytearray(open(path, "rb").read())
    data[40:len(data) // 2] = bytes((b * 7 + 13) % 256 for b in data[40:len(data) // 2])  # pages, not the footer
    with open(path, "wb") as f:
        f.write(data)
    capsys.readouterr()
    assert main(["backfill", "--config", str(config), "--start", day(1), "--end", day(2)]) == 1
    out, err = capsys.readouterr()
    assert f"{day(2)}  done" in out and "1 of 2 partition(s) failed" in err
    assert f"{day(1)}  failed" in out and f"raw partition {s.dataset.raw_uri}/dt={day(1)} cannot be read" in out
    assert slices(s)["dt"].cast(pl.Utf8).to_list() == [day(0), day(2)]

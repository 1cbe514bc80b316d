"""A config that stops naming a column the champion reads: a command that would encode with that
champion is refused before any work in one line naming the column, the champion's version and the fix;
`latentfeed train` (the fix) still runs (tests/e2e/test_bad_input_cli.py), and validation names the
cause rather than a missing column."""
from __future__ import annotations

import pytest

from flows.cli import main

from tests.helpers import TRACEBACK, day, published_days, set_config


@pytest.mark.timeout(240)
def test_a_column_the_champion_reads_and_the_config_no_longer_names_is_refused_before_any_work(with_champion,
                                                                                             capsys):
    config = with_champion(days=2, rows=400)
    set_config(config, 'real = ["x_*"]', 'real = ["x_0*", "x_1*"]')  # x_20 .. x_23: still in the raw data
    capsys.readouterr()
    for command in (["run", "--date", day(1)], ["backfill", "--start", day(1), "--end", day(1)]):
        assert main([command[0], "--config", str(config), *command[1:]]) == 2, command
        err = capsys.readouterr().err
        [line] = [x for x in err.splitlines() if x.startswith("config error:")]
        assert (f"config error: {config.resolve()}: [dataset] no longer names column(s) ['x_20', 'x_21', 'x_22', "
                "'x_23'] that the champion (model sample-autoencoder version 1) reads") in line, line
        assert (f"name them again in [dataset].real, or train a version without them with `latentfeed train --config "
                f"{config.resolve()}`") in line, line
        assert "Beginning flow run" not in err and not TRACEBACK.search(err)
    assert published_days(config) == [day(0)]

    assert main(["validate", "--config", str(config), "--date", day(1)]) == 1  # as a deployment's run validates
    out = capsys.readouterr().out
    assert "'x_20' failed (column is present)" in out
    assert "[dataset] no longer names it, and the champion reads it: name it again in [dataset]" in out, out

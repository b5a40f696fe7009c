"""Progress where stderr is a log file: a line with the count, rate and time left, not a silent epoch."""

import sys

from cryofield.cli import _common
from cryofield.cli._common import LogProgress, progress_bar


def test_a_log_gets_a_line_per_interval_with_the_time_left(capsys):
    with LogProgress(200, "epoch 2/31 (search)", interval=0.0) as bar:
        for _ in range(4):
            bar.update(50)
    err = capsys.readouterr().err
    assert "\r" not in err  # whole lines, not a bar redrawn in place
    lines = err.splitlines()
    assert len(lines) == 5  # one per update, then the close
    assert lines[1].startswith("epoch 2/31 (search):  50%") and "100/200" in lines[1]
    assert "<" in lines[1] and "img/s]" in lines[1]  # elapsed<remaining, throughput


def test_short_work_leaves_the_log_alone(capsys):
    with LogProgress(10, "maps", unit="map") as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_progress_bar_writes_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    assert not sys.stderr.isatty()
    monkeypatch.setattr(_common, "LOG_PROGRESS_SECONDS", 0.0)
    bar = progress_bar(3, "backproject")
    assert isinstance(bar, LogProgress)
    bar.update(3)
    assert bar.n == 3
    bar.close()
    bar.close()  # once closed, silent
    assert capsys.readouterr().err.count("backproject") == 2


def test_an_unknown_total_still_counts(capsys):
    with LogProgress(0, "prepare", interval=0.0) as bar:
        bar.update(7)
    assert capsys.readouterr().err.startswith("prepare: 7.00img [")

"""One process writes a work directory at a time; a killed one leaves no stale lock."""

import subprocess
import sys
import time

from cryofield.cli.main import main
from cryofield.io import WorkDir
from cryofield.simulate.toy import make_toy_dataset

HOLD = """
import sys, time
from cryofield.io import WorkDir
with WorkDir(sys.argv[1]).locked():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path, capsys):
    toy = make_toy_dataset(tmp_path / "toy", n=16, box=16, apix=6.0, snr=20, seed=3)["star"]
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = ["train-nn", str(toy), "-o", str(out), "-n", "1", "--dec-dim", "16", "--dec-layers", "1"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err and not (out / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs
        holder.wait()
    started = time.perf_counter()
    assert main(args) == 0 and (out / "checkpoints/last.pt").is_file()
    assert time.perf_counter() - started < 30
    with WorkDir(out).locked():  # released when the run ended
        pass

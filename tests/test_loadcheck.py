"""Speed figures are marked when other processes used the machine while they were taken."""

from __future__ import annotations

import subprocess
import sys
import time

from hf_fviz import bench
from hf_fviz.bench.loadcheck import LoadMonitor

BURN = "import time\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\n"


def test_load_monitor_sees_another_process_burning_a_cpu() -> None:
    monitor = LoadMonitor().start()
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    time.sleep(1.7)
    load = monitor.stop()  # before wait(): the burner is not yet counted as our own child
    burner.wait()
    cpus = load.cpus
    assert load.other_share is not None and load.other_share >= 0.6 / cpus  # one busy core of `cpus`
    assert load.busy and "other processes used" in load.reason
    assert f"of {cpus} CPUs" in load.describe()


def test_speed_table_is_marked_untrustworthy_when_the_machine_was_busy() -> None:
    monitor = LoadMonitor().start()
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    time.sleep(1.7)
    machine = monitor.stop().to_dict()
    burner.wait()
    row = bench.SpeedResult(case="a", title="t", hf_fviz_s_per_step=0.1, horama_s_per_step=0.3, ratio=3.0,
                            hf_fviz_peak_mb=None, horama_peak_mb=None, ratio_meaning="", goal=">= 2.0x", met=True,
                            size=64, crops=2, units=1, machine=machine)
    table = bench.speed_table([row])
    assert table.startswith("**Not trustworthy: the machine was busy (other processes used")
    quiet = dict(machine, busy=False, reason="")
    assert not bench.speed_table([bench.SpeedResult(**{**row.__dict__, "machine": quiet})]).startswith("**Not")

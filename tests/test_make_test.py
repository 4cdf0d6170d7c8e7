"""`make test` on a fresh machine: the browser test's Chromium is installed by the Makefile's
script when missing (root + apt-get), or one line says what to install; `.ci/run` is just `make test`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ensure_chromium.sh"
MISSING = "/nonexistent/hf-fviz-test/chromium"


def _run(env: dict[str, str], prefix: list[str] = ()) -> subprocess.CompletedProcess:
    # A world-readable copy: the checkout may sit where an unprivileged user cannot read it.
    folder = Path(tempfile.mkdtemp(prefix="hf_fviz_chromium_"))
    try:
        folder.chmod(0o755)
        script = Path(shutil.copy2(SCRIPT, folder / SCRIPT.name))
        return subprocess.run([*prefix, "env", *(f"{k}={v}" for k, v in env.items()), str(script)],
                              capture_output=True, text=True, timeout=30, cwd=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_present_chromium_needs_nothing():
    done = _run({"CHROMIUM": sys.executable, "DRY_RUN": "1"})
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="the install path is for root on Debian")
def test_missing_chromium_as_root_is_installed_with_apt():
    done = _run({"CHROMIUM": MISSING, "DRY_RUN": "1"})
    assert done.returncode == 0
    assert done.stdout.strip() == f"would run: apt-get update && apt-get install -y chromium (missing: {MISSING})"


def test_missing_chromium_without_root_says_what_to_install():
    prefix: list[str] = []
    if os.geteuid() == 0:  # drop to nobody, as a user without root would run it
        if not shutil.which("setpriv"):
            pytest.fail("setpriv (util-linux) is needed to run the non-root case as root")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = _run({"CHROMIUM": MISSING, "PATH": os.environ["PATH"]}, prefix)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install -y chromium" in lines[0] and MISSING in lines[0]


def test_make_test_ensures_chromium_before_pytest_and_ci_only_calls_make_test():
    recipe = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, env={**os.environ, "MAKEFLAGS": ""}).stdout.splitlines()
    steps = [line for line in recipe if "ensure_chromium.sh" in line or "pytest" in line]
    assert "ensure_chromium.sh" in steps[0] and "pytest" in steps[-1], recipe
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == "make test" and not any("apt-get" in line or "chromium" in line for line in ci)

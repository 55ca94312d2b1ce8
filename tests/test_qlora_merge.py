"""A QLoRA adapter merged consistently with the base it was trained on (tests/qlora_check.py), run in a subprocess
with bitsandbytes (its CPU backend) in a folder of its own, so the main environment, and every notebook run in it,
stays without bitsandbytes on CPU (its import prints a warning there)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import extra_site, site_env

REPO = Path(__file__).resolve().parents[1]
BITSANDBYTES = "bitsandbytes==0.50.2"  # the version the GPU runs carry


@pytest.mark.slow
def test_qlora_adapter_merged_into_its_dequantized_4bit_base():
    site = extra_site("bitsandbytes-cpu", [BITSANDBYTES])
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/qlora_check.py"]
    done = subprocess.run(cmd, cwd=REPO, env=site_env(site), capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert "1 passed" in done.stdout and done.returncode == 0, output[-4000:]
    print(next((line for line in done.stdout.splitlines() if "relative logit error" in line), ""))

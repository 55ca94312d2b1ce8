"""scripts/gpu/peers.sh: every named experiment is a command line benchmarks/peer_speed.py accepts (checked without a
GPU, through the script's DRY_RUN), so a renamed side or option is found here rather than on the GPU machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu" / "peers.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def peers(*args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "DRY_RUN": "1"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, check=True
    ).stdout


def experiments() -> list[str]:
    return [line.split()[0] for line in peers("list").splitlines() if line.strip()]


def test_the_list_names_experiments_not_numbers():
    names = experiments()
    assert "sft-defaults" in names and len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", n) and not n.isdigit() for n in names)


@pytest.mark.parametrize("name", experiments())
def test_each_experiment_is_a_peer_speed_command_line(name):
    source = (REPO / "benchmarks" / "peer_speed.py").read_text()
    sides = set(re.findall(r'"([a-z0-9-]+)"', source[source.index("SIDES = (") : source.index("GC_LEVERS")]))
    options = set(re.findall(r'add_argument\(\s*"(--[a-z-]+)"', source))
    command = peers(name).split()
    assert command[:4] == ["timeout", command[1], "python3", "benchmarks/peer_speed.py"]
    args = command[4:]
    assert {a for a in args if a.startswith("--")} <= options, name
    given = args[args.index("--sides") + 1 :]
    given = given[: next((i for i, a in enumerate(given) if a.startswith("--")), len(given))]
    assert given and set(given) <= sides, name
    tag = args[args.index("--tag") + 1]
    assert tag.startswith("peers") and int(args[args.index("--deadline") + 1]) < int(command[1]) <= 600


def test_options_after_the_name_come_last_and_an_unknown_name_fails():
    assert peers("sft-defaults", "--steps", "2").split()[-2:] == ["--steps", "2"]
    with pytest.raises(subprocess.CalledProcessError):
        peers("no-such-experiment")

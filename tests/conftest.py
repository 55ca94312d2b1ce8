"""Shared fixtures: the real ECQA data folder (env var ECQA_DATA, default ../shared/data/ecqa) and SmolLM2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ecqa_dir() -> Path:
    """The local CSQA + ECQA folder; tests that need it are skipped when it is absent."""
    path = Path(os.environ.get("ECQA_DATA", REPO.parent / "shared" / "data" / "ecqa"))
    if not path.is_dir():
        pytest.skip(f"ECQA data not found at {path}: set ECQA_DATA to the folder")
    return path


@pytest.fixture(scope="session")
def ecqa_loaded(ecqa_dir: Path) -> tuple[Any, Any]:
    """``load_ecqa(ecqa_dir, return_report=True)`` once per session: (DatasetDict, LoadReport)."""
    from helpers.data import load_ecqa

    return load_ecqa(ecqa_dir, return_report=True)


SMOL = "smollm2-135m"


@pytest.fixture(scope="session")
def smol_tokenizer() -> Any:
    """SmolLM2-135M-Instruct's tokenizer as `helpers.models` loads it (eos <|im_end|>, pad <|endoftext|>)."""
    from helpers.models import load_tokenizer

    return load_tokenizer(SMOL)


@pytest.fixture
def smol_model() -> Callable[[], Any]:
    """Factory: a fresh SmolLM2-135M-Instruct (fp32 on CPU) per call, since training mutates it."""
    from helpers.models import load_model

    return lambda: load_model(SMOL)


@pytest.fixture(scope="module")
def torch_threads():
    """Torch on ``MCQ_TEST_THREADS`` threads (default 1) for a module's real-model tests: on a 2-core
    machine shared with other jobs, one thread was 5x faster than two (oversubscription)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("MCQ_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_model_in_quick_tests(request, monkeypatch):
    """`make test-quick` (``-m "not slow and not notebook"``) loads no model: a test not marked slow fails if it
    calls `helpers.models.load_model` or `AutoModelForCausalLM.from_pretrained`.

    One exception: the one-time conversion of the embedded SmolLM2 GGUF into the cache
    (`helpers.models._convert_embedded`), which the tokenizer of a fresh machine needs; it is recognised by its
    ``gguf_file`` argument and happens at most once per machine.
    """
    if request.node.get_closest_marker("slow") or request.node.get_closest_marker("notebook"):
        return
    import transformers

    from helpers import models

    original = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{request.node.nodeid} loads a model but is not marked @pytest.mark.slow")

    def guarded(cls: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("gguf_file"):  # the cache conversion of the embedded GGUF (see the docstring)
            return original(cls, *args, **kwargs)
        return refuse()

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(guarded))
    monkeypatch.setattr(models, "load_model", refuse)


def child_env(*drop: str) -> dict[str, str]:
    """The environment for a test's subprocess that runs a real step: ``MCQ_TEST_THREADS`` threads, offline, no
    tracking or token, unbuffered; ``drop`` names more variables to remove."""
    threads = os.environ.get("MCQ_TEST_THREADS", "1")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("WANDB_API_KEY", "WANDB_MODE", "HF_TOKEN", *drop):
        env.pop(key, None)
    return env


def extra_site(name: str, specs: list[str]) -> Path:
    """A folder of extra packages (``pip install --no-deps --target``) for tests that run in a subprocess with it
    first on ``PYTHONPATH``: ``.venv/<name>``, made once (PyPI needed the first time; under ``MCQ_REQUIRE_PYPI=1``,
    as in CI, a failed install fails the test instead of skipping it)."""
    target = REPO / ".venv" / name
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(partial), *specs]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        (pytest.fail if os.environ.get("MCQ_REQUIRE_PYPI") else pytest.skip)(
            f"could not install {' '.join(specs)} (PyPI needed the first time):\n{done.stderr[-1500:]}"
        )
    (partial / ".complete").write_text(" ".join(specs) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def site_env(site: Path) -> dict[str, str]:
    """This environment with ``site`` first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}

"""The Colab path: the HF token comes from the Colab secret or the environment and is never shown, and each
notebook either starts from the previous notebook's saved artifacts or says which notebook to run first.

(Badges and links: test_links.py; the notebooks' shape and a headless run: test_notebooks.py.)
"""

from __future__ import annotations

import importlib.machinery
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from helpers import models
from helpers.settings import DPOSettings, EvalSettings, PairSettings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("0*.ipynb"))
SENTINEL = "hf_SENTINEL_do_not_print_4f2a9c"


def code_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


# ---------------------------------------------------------------- the token


@pytest.fixture
def colab_secret(monkeypatch):
    """A stand-in for ``google.colab.userdata``: set the secret store's contents, or make it refuse."""
    import transformers

    transformers.AutoTokenizer  # noqa: B018 - import the Hub stack first: it probes for google.colab when it loads
    store: dict[str, str] = {}

    def get(key: str) -> str:
        if key not in store:
            raise RuntimeError(f"Secret {key} does not exist.")  # what Colab raises, more or less
        return store[key]

    colab = types.ModuleType("google.colab")
    colab.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    colab.userdata = types.SimpleNamespace(get=get)
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return store


def test_token_comes_from_the_colab_secret_then_the_environment(colab_secret, monkeypatch):
    assert models.hf_token() is None  # no secret, no variable: anonymous
    colab_secret["HF_TOKEN"] = SENTINEL
    assert models.hf_token() == SENTINEL
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    assert models.hf_token() == "hf_from_the_environment"


def test_secret_reaches_the_hub_call_and_no_message(colab_secret, monkeypatch, capsys):
    """The Colab secret is what `from_pretrained` gets; the gated-model error that follows does not show it."""
    import transformers

    seen = {}

    def refuse(source, **kwargs):
        seen.update(kwargs)
        raise OSError("401 Client Error: Unauthorized for url https://huggingface.co/meta-llama/...")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    colab_secret["HF_TOKEN"] = SENTINEL
    with pytest.raises(PermissionError) as err:
        models.load_tokenizer("llama-3.2-1b")
    assert seen["token"] == SENTINEL
    assert "Colab secret HF_TOKEN" in str(err.value) and SENTINEL not in str(err.value)
    out = capsys.readouterr()
    assert SENTINEL not in out.out + out.err


@pytest.mark.slow
def test_a_failing_command_never_prints_the_token(tmp_path, ecqa_dir):
    """A real command line that fails to fetch a gated model (offline here) prints its error, not the token."""
    settings = tmp_path / "pairs.json"
    settings.write_text(
        f'{{"model": "llama-3.2-1b", "data_source": "{ecqa_dir}", "root": "{tmp_path}", "train_sample_size": 4, '
        '"strategy": "offline"}'
    )
    env = {**os.environ, "HF_TOKEN": SENTINEL, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "helpers", "pairs", str(settings)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "meta-llama/Llama-3.2-1B-Instruct" in output, output[-2000:]
    assert SENTINEL not in output


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_never_touch_the_token(path):
    """Only `helpers.models.hf_token` reads the token, and only to pass it on: no notebook cell reads, logs in
    with or echoes it (a printed token lands in the saved outputs)."""
    risky = re.compile(
        r"HF_TOKEN|hf_token|userdata|notebook_login|huggingface-cli|hf auth|os\.environ|getenv|%env|!env"
    )
    for source in code_cells(path):
        assert not risky.search(source), f"{path.name}: a code cell handles the token or the environment:\n{source}"


def test_helpers_only_pass_the_token_on():
    uses = [
        (p.name, line.strip())
        for p in (REPO / "helpers").glob("*.py")
        for line in p.read_text().splitlines()
        if "hf_token()" in line and "def hf_token" not in line
    ]
    assert uses and all(re.search(r"\btoken\"?\s*[=:]\s*hf_token\(\)", line) for _, line in uses), uses


# ---------------------------------------------------------------- starting from the previous notebook's artifacts


def cell(path: Path, marker: str) -> str:
    """The one code cell of a notebook that contains ``marker``."""
    found = [s for s in code_cells(path) if marker in s]
    assert len(found) == 1, f"{path.name}: {len(found)} cells contain {marker!r}"
    return found[0]


def run_cell(source: str, **namespace) -> dict:
    from helpers import evaluation, metrics, pairs, steps

    ns = dict(
        models=models,
        pairs=pairs,
        steps=steps,
        evaluation=evaluation,
        metrics=metrics,
        Path=Path,
        Counter=__import__("collections").Counter,
        **namespace,
    )
    exec(compile(source, "<cell>", "exec"), ns)  # noqa: S102 - our own notebook's cell
    return ns


def test_02_on_policy_without_the_sft_adapter_names_03_sft(tmp_path):
    s = PairSettings(model="smollm2-135m", root=str(tmp_path), strategy="on_policy")
    with pytest.raises(
        FileNotFoundError,
        match=r"no adapter in \S+: run notebooks/03_sft \(python -m helpers sft\) "
        r"with the same root first, or set sft_adapter",
    ):
        run_cell(cell(REPO / "notebooks" / "02_pairs.ipynb", "check_sft_adapter"), form=SimpleNamespace(settings=s))


def test_04_names_03_sft_then_02_pairs(tmp_path):
    source = cell(REPO / "notebooks" / "04_dpo.ipynb", "pairs_for_dpo")
    form = SimpleNamespace(settings=DPOSettings(model="smollm2-135m", root=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match=r"no adapter in \S+: run notebooks/03_sft"):
        run_cell(source, form=form)
    sft = tmp_path / "outputs" / "sft"
    sft.mkdir(parents=True)
    (sft / "adapter_config.json").write_text("{}")
    (sft / "settings.json").write_text('{"model": "smollm2-135m"}')
    with pytest.raises(FileNotFoundError, match=r"no pairs file at \S+: run notebook 02_pairs"):
        run_cell(source, form=form)


def test_05_with_no_variant_to_evaluate_names_the_notebooks_and_keeps_old_results(tmp_path):
    """Asking only for variants not trained under ROOT used to write an empty results table over the old one."""
    old = tmp_path / "eval" / "results.csv"
    old.parent.mkdir()
    old.write_text("variant,mode,n\nsft,cot,1221\n")
    s = EvalSettings(model="smollm2-135m", root=str(tmp_path), variants=("sft", "dpo"))
    with pytest.raises(
        FileNotFoundError, match=r"none of the variants \['sft', 'dpo'\] .*03_sft.*04_dpo.*or add 'base'"
    ):
        run_cell(cell(REPO / "notebooks" / "05_eval.ipynb", "steps.run_eval"), s=s, data=None, RESULTS_FROM=None)
    assert old.read_text() == "variant,mode,n\nsft,cot,1221\n"

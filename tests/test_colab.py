"""The Colab path: the HF token comes from the Colab secret or the environment and is never shown; each
notebook either starts from the previous notebook's saved artifacts or says which notebook to run first; the
choices made in 01 reach the later notebooks through ROOT/series.json; the install cell restarts the runtime once
when the install replaced a package Colab had already loaded, and the versions it prints are those loaded.

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

from helpers import colab, models, steps
from helpers.settings import STEP_SETTINGS, DPOSettings, EvalSettings, PairSettings, Settings

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
    source = "\n".join(line for line in source.splitlines() if not line.startswith("%"))  # no IPython magics here
    exec(compile(source, "<cell>", "exec"), ns)  # noqa: S102 - our own notebook's cell
    return ns


def test_02_on_policy_without_the_sft_adapter_builds_offline_pairs_and_says_why(tmp_path, capsys):
    """Run in order, 02 comes before 03: it builds offline pairs, naming 03_sft; the command line refuses instead."""
    s = PairSettings(model="smollm2-135m", root=str(tmp_path), strategy="on_policy")
    ns = run_cell(
        cell(REPO / "notebooks" / "02_pairs.ipynb", "pairs_to_build").replace(
            "data = steps.load_data(s)", "data = None"
        ),
        form=SimpleNamespace(settings=s),
    )
    assert ns["s"].strategy == "offline" and ns["s"].replace(strategy="on_policy") == s
    out = capsys.readouterr().out
    assert "no SFT adapter in" in out and "03_sft" in out and "Run this notebook again after 03_sft" in out
    with pytest.raises(FileNotFoundError, match=r"no adapter in \S+: run notebooks/03_sft"):
        steps.check_sft_adapter(s)  # what `python -m helpers pairs` (steps.prepare) says


def test_02_with_the_sft_adapter_keeps_on_policy(tmp_path):
    s = PairSettings(model="smollm2-135m", root=str(tmp_path), strategy="on_policy")
    s.sft_dir.mkdir(parents=True)
    (s.sft_dir / "adapter_config.json").write_text("{}")
    assert steps.pairs_to_build(s) is s


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
        run_cell(cell(REPO / "notebooks" / "05_eval.ipynb", "steps.run_eval"), s=s, data=None)
    assert old.read_text() == "variant,mode,n\nsft,cot,1221\n"


def test_05_opens_published_records_without_a_model(tmp_path):
    """results_from (a form field) opens the published records: no adapter, no data, tables under eval-published."""
    s = EvalSettings(model="smollm2-135m", root=str(tmp_path), results_from=str(REPO / "assets" / "results"))
    ns = run_cell(cell(REPO / "notebooks" / "05_eval.ipynb", "steps.run_eval"), s=s, data=None)
    assert ns["OUT"] == tmp_path / "eval-published" and (ns["OUT"] / "results.csv").is_file()
    assert {"base", "sft", "dpo"} <= set(ns["records"]["variant"])
    assert steps.prepare("eval", s) == {}  # the command line too: nothing to check or load
    with pytest.raises(FileNotFoundError, match=r"no \*\.jsonl or \*\.jsonl\.gz records in .*empty it to evaluate"):
        steps.run_eval(s.replace(results_from=str(tmp_path)))


# ---------------------------------------------------------------- choices made once, in 01


@pytest.fixture
def no_pointer(monkeypatch, tmp_path):
    """`colab.POINTER` in a temporary home, and no $MCQ_ROOT."""
    monkeypatch.setattr(colab, "POINTER", tmp_path / "home" / "series.json")
    monkeypatch.delenv(colab.ROOT_ENV, raising=False)
    return colab.POINTER


def test_default_root_is_drive_on_colab_artifacts_elsewhere_or_mcq_root(monkeypatch, no_pointer):
    assert colab.default_root() == "artifacts"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert colab.default_root() == "/content/drive/MyDrive/llama32-mcq-cot"
    monkeypatch.setenv(colab.ROOT_ENV, "/tmp/headless-root")
    assert colab.default_root() == "/tmp/headless-root"


def test_series_chosen_in_01_reach_every_later_settings_class(tmp_path, monkeypatch, no_pointer, capsys):
    monkeypatch.setenv(colab.ROOT_ENV, str(tmp_path / "default"))
    assert colab.load_series() == {"root": str(tmp_path / "default")}  # nothing saved yet: the defaults
    assert "run 01_data first" in capsys.readouterr().out
    chosen = Settings(model="smollm2-135m", data_source="/data/ecqa", root=str(tmp_path / "default"), run_size="full")
    path = colab.save_series(chosen)
    assert path == tmp_path / "default" / "series.json" and not no_pointer.exists()
    series = colab.load_series()
    assert series == {
        "model": "smollm2-135m",
        "data_source": "/data/ecqa",
        "root": str(tmp_path / "default"),
        "run_size": "full",
    }
    for cls in STEP_SETTINGS.values():
        s = cls(**series)
        assert (s.model, s.data_source, s.root_dir, s.run_size) == (
            chosen.model,
            chosen.data_source,
            chosen.root_dir,
            "full",
        )


def test_a_root_other_than_the_default_is_found_through_the_pointer(tmp_path, no_pointer):
    elsewhere = tmp_path / "my-root"
    colab.save_series(Settings(model="smollm2-135m", root=str(elsewhere)))
    assert no_pointer.is_file() and (elsewhere / "series.json").is_file()
    assert colab.load_series()["root"] == str(elsewhere)
    (elsewhere / "series.json").write_text('{"model": "x", "learning_rate": 1}')
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]: run 01_data again"):
        colab.load_series()


def test_later_notebooks_read_the_series_and_retype_nothing():
    """Cell 3 of 02-05 builds its settings from `colab.load_series()`; 01 saves them from its form."""
    for path in NOTEBOOKS:
        source = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        assert "colab.load_series()" in source.source, path.name
        assert not re.search(r"\b(MODEL|ROOT|DATA_SOURCE)\s*=", source.source), path.name
    assert "colab.save_series(settings)" in cell(REPO / "notebooks" / "01_data.ipynb", "save_series")


# ---------------------------------------------------------------- the install cell: a restart when it must
RUNTIME = REPO / "tests" / "fixtures" / "colab-runtime.txt"
PRELOADED = REPO / "tests" / "fixtures" / "colab-preloaded.txt"


def colab_pins() -> dict[str, str]:
    """Colab's installed versions, by canonical name (tests/fixtures/colab-runtime.txt)."""
    from packaging.utils import canonicalize_name

    found = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", RUNTIME.read_text(), re.M)
    return {canonicalize_name(n): v for n, v in found}


def colab_loaded() -> dict[str, str]:
    """What a fresh Colab runtime has loaded before the first cell: each preloaded module's distribution at
    Colab's version (tests/fixtures/colab-preloaded.txt)."""
    from packaging.utils import canonicalize_name

    pins = colab_pins()
    lines = [ln.split() for ln in PRELOADED.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    dists = [canonicalize_name(dist) for _module, dist in lines]
    missing = [d for d in dists if d not in pins]
    assert not missing, f"{PRELOADED.name} names packages Colab does not list: {missing}"
    return {d: pins[d] for d in dists}


def install_changes(pins: dict[str, str]) -> dict[str, str]:
    """Packages the install cell must replace on Colab, offline: every requirement reachable from the package (its
    dependencies and `colab` extra, read from this environment's metadata) that Colab's version does not satisfy,
    at the version installed here. (test_colab_install.py resolves it with pip against PyPI.)"""
    from importlib.metadata import PackageNotFoundError, requires
    from importlib.metadata import version as installed

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    changed, seen, todo = {}, set(), [("llama32-mcq-cot-helpers", {"colab"})]
    while todo:
        name, extras = todo.pop()
        for line in requires(name) or []:
            req = Requirement(line)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
                continue
            key = canonicalize_name(req.name)
            if key in pins and not req.specifier.contains(pins[key], prereleases=True):
                try:
                    changed[key] = installed(req.name)
                except PackageNotFoundError:
                    continue
            if key not in seen:
                seen.add(key)
                try:
                    installed(req.name)
                except PackageNotFoundError:
                    continue
                todo.append((req.name, set(req.extras)))
    return changed


def test_colabs_preloaded_pyarrow_is_replaced_so_the_install_restarts_once(tmp_path, capsys):
    """On Colab as it is, the install cell replaces pyarrow (datasets needs a newer one), which Colab imported
    at start-up: it restarts the runtime once, saying so, and the next run of the cell does not restart again."""
    pins = colab_pins()
    loaded = colab_loaded()
    changes = install_changes(pins)
    assert "pyarrow" in changes, changes
    on_disk = {**pins, **changes}
    kills: list[tuple[int, int]] = []
    marker = tmp_path / "restarted"
    stale = colab.restart_if_stale(
        loaded=loaded, on_disk=on_disk, colab=True, kill=lambda pid, sig: kills.append((pid, sig)), marker=marker
    )
    assert "pyarrow" in stale and set(stale) <= set(loaded) & set(changes)
    assert kills == [(os.getpid(), 9)] and marker.is_file()
    assert "Restarting the runtime once" in capsys.readouterr().out
    again = colab.restart_if_stale(loaded=loaded, on_disk=on_disk, colab=True, kill=kills.append, marker=marker)
    assert again == stale and len(kills) == 1, "a second restart: the marker must stop it"


def test_no_restart_when_nothing_loaded_changed_or_off_colab(tmp_path, capsys):
    loaded, kills = colab_loaded(), []
    kill = lambda pid, sig: kills.append(pid)  # noqa: E731
    only_new = {**colab_pins(), "trl": "1.16.0", "bitsandbytes": "0.50.2"}  # added packages nobody had loaded
    assert colab.restart_if_stale(loaded=loaded, on_disk=only_new, colab=True, kill=kill, marker=tmp_path / "m") == []
    stale = colab.restart_if_stale(
        loaded=loaded, on_disk={**colab_pins(), "pyarrow": "26.0.1"}, colab=False, kill=kill, marker=tmp_path / "m"
    )
    assert stale == ["pyarrow"] and not kills and not (tmp_path / "m").exists()
    assert "restart the runtime" in capsys.readouterr().out
    assert colab.stale_packages({"torch": "2.11.0+cu128"}, {"torch": "2.11.0+cu128"}) == []


def test_versions_reported_are_the_loaded_ones(monkeypatch):
    """A module imported before an install reports its loaded version, not the one now on disk."""
    fake = types.ModuleType("pyarrow")
    fake.__version__ = "18.1.0"
    monkeypatch.setitem(sys.modules, "pyarrow", fake)
    assert colab.loaded_versions()["pyarrow"] == "18.1.0"
    line = colab.environment()
    assert "pyarrow 18.1.0 (loaded; " in line and "installed: restart the runtime)" in line
    import transformers

    assert f"transformers {transformers.__version__} |" in line


def test_the_install_cell_restarts_before_it_reports():
    for path in NOTEBOOKS:
        install = cell(path, "pip install")
        assert install.index("restart_if_stale()") < install.index("print(environment())"), path.name

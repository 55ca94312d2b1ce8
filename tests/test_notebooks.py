"""The five notebooks: committed clean and in the shared shape (fast), and executed end to end (slow)."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import nbformat
import pandas as pd
import pytest
from test_history import HISTORY

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
EXPECTED = ["01_data", "02_pairs", "03_sft", "04_dpo", "05_eval"]
BADGE = re.compile(
    r"\(https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/(notebooks/[\w.-]+\.ipynb)\)"
)


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package) imported by path."""
    spec = importlib.util.spec_from_file_location(f"scripts_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMITTED = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_all_five_notebooks_exist() -> None:
    assert [p.stem for p in COMMITTED if p.stem in EXPECTED] == EXPECTED, [p.name for p in COMMITTED]


@pytest.fixture(params=COMMITTED, ids=[p.stem for p in COMMITTED])
def notebook(request: pytest.FixtureRequest) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, nbformat.read(request.param, as_version=4)


def test_committed_without_outputs(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    assert not _script("clean_notebooks").dirty(nb), (
        f"{path.name} carries outputs, execution counts or widget state: run "
        f"`python scripts/clean_notebooks.py notebooks/{path.name}`"
    )


def test_opens_with_a_colab_badge_to_itself(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Open In Colab" in first.source, "the first cell is the title + badge"
    links = BADGE.findall(first.source)
    assert links == [f"notebooks/{path.name}"], f"the badge points at {links}, not at notebooks/{path.name}"
    assert "**Needs:**" in first.source and "**Produces:**" in first.source


def _cells(nb: nbformat.NotebookNode, kind: str) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == kind]


def _python(source: str) -> str:
    """A code cell as plain Python: IPython's magics and shell lines (``%pip``, ``!ls``) commented out."""
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def test_the_settings_cell_reads_the_choices_made_in_01(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    """One code cell tagged parameters builds the settings from ROOT/series.json (01: a form over it); nothing a
    settings field holds is retyped as a constant, and no test hook (FORM_EDITS) is in sight."""
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: one code cell tagged parameters"
    source = tagged[0].source
    assert "colab.load_series()" in source and f"{SETTINGS_OF[path.stem]}(**colab.load_series())" in source
    retyped = re.compile(
        r"^(MODEL|ROOT|DATA_SOURCE|TRAIN_SAMPLE_SIZE|STRATEGY|VARIANTS|EVAL_MODES|RESULTS_FROM|"
        r"EVAL_SAMPLE_SIZE|OVERRIDES|FORM_EDITS)\s*=",
        re.M,
    )
    for cell in _cells(nb, "code"):
        assert not retyped.search(cell), f"{path.name} retypes a setting as a constant:\n{cell}"
        assert "FORM_EDITS" not in cell and "OVERRIDES" not in cell, f"{path.name}: a test hook in sight:\n{cell}"


def test_the_choices_are_form_fields():
    """02's strategy and 05's variants, modes and published records are fields the form shows first."""
    from helpers.settings import EvalSettings, PairSettings

    assert "strategy" in PairSettings.LESSON
    assert {"variants", "modes", "results_from", "sample_size"} <= set(EvalSettings.LESSON)


def helper_imports(tree: ast.Module) -> set[str]:
    """Names a cell binds by importing from the helpers package (``from helpers import steps``, ``import helpers``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "helpers":
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.split(".")[0] == "helpers"}
    return names


def bound_names(tree: ast.Module) -> set[str]:
    """Names a cell binds at the notebook's top level other than by importing from helpers: assignments, loop and
    ``with`` targets, definitions, other imports."""
    names: set[str] = set()

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets(node.target)
        elif isinstance(node, ast.NamedExpr):
            targets(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets(node.optional_vars)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.Import) or (
            isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] != "helpers"
        ):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
    return names


def shadowed_helpers(sources: list[str]) -> set[str]:
    """Names imported from helpers in one cell and bound to something else in any cell (a rerun then breaks)."""
    trees = [ast.parse(_python(s)) for s in sources]
    imported = set().union(*(helper_imports(t) for t in trees))
    return imported & set().union(*(bound_names(t) for t in trees))


def test_the_shadow_check_catches_a_module_rebound():
    """The check below, on the bug it guards against: a cell assigning to ``steps`` hid `helpers.steps`, so rerunning
    the training cell raised AttributeError."""
    assert shadowed_helpers(["from helpers import steps, models", "steps = max([1, 2])"]) == {"steps"}
    assert shadowed_helpers(["from helpers import steps", "for models in []: pass"]) == set()
    assert shadowed_helpers(["import helpers.steps as steps", "with open('f') as steps: pass"]) == {"steps"}
    assert shadowed_helpers(["from helpers import steps", "last_step = 3"]) == set()


def test_no_cell_rebinds_a_name_imported_from_helpers(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    shadowed = shadowed_helpers(_cells(nb, "code"))
    assert not shadowed, f"{path.name}: cells assign to {sorted(shadowed)}, which a cell imports from helpers"


# ---------------------------------------------------------------- what the learner reads
MAX_WORDS, MAX_CELL_WORDS = 900, 150
T4_LINE = re.compile(r"^\*\*T4 time \(estimate\):\*\* quick ~\d+(–\d+)? min, full ~\d+(–\d+)? min\b.*$", re.M)
NEXT = {"01_data": "02_pairs.ipynb", "02_pairs": "03_sft.ipynb", "03_sft": "04_dpo.ipynb", "04_dpo": "05_eval.ipynb"}


def words(text: str) -> int:
    """Words as whitespace splits them, or as a word pattern counts them (a link's and a formula's parts count),
    whichever is more."""
    return max(len(text.split()), len(re.findall(r"[A-Za-z0-9][\w'-]*", text)))


def test_markdown_reads_in_minutes(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    """At most 900 words of markdown a notebook, and no cell over 150 (about a minute's reading)."""
    path, nb = notebook
    counts = [words(s) for s in _cells(nb, "markdown")]
    assert sum(counts) <= MAX_WORDS, f"{path.name}: {sum(counts)} words of markdown (at most {MAX_WORDS})"
    long = [(s.splitlines()[0], words(s)) for s in _cells(nb, "markdown") if words(s) > MAX_CELL_WORDS]
    assert not long, f"{path.name}: markdown cells over {MAX_CELL_WORDS} words: {long}"


def test_opens_with_what_you_learn_need_and_the_t4_time(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    first = nb.cells[0].source
    assert "**You learn:**" in first and "**Needs:**" in first, path.name
    lines = [m.group(0) for s in _cells(nb, "markdown") for m in T4_LINE.finditer(s)]
    assert len(lines) == 1 and lines[0] in first, (
        f"{path.name}: one '**T4 time (estimate):** quick ~N min, full ~M min' line"
    )
    assert sum(s.count("T4 time") for s in _cells(nb, "markdown")) == 1


def test_ends_with_checks_what_to_see_questions_and_exercises(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    kinds = [(c.cell_type, c.source.splitlines()[0] if c.source else "") for c in nb.cells]
    heads = [i for i, (kind, head) in enumerate(kinds) if kind == "markdown" and head.startswith("## ")]
    tail = [kinds[i][1] for i in heads[-4:]]
    assert tail == ["## Check yourself", "## What you should see", "## Questions", "## Exercises"], tail
    check = nb.cells[heads[-4] + 1]
    assert check.cell_type == "code" and "assert" in check.source, "a 'Check yourself' cell of asserts"
    assert nb.cells[-1].source.startswith("## Exercises"), "exercises come last"
    see = nb.cells[heads[-3]].source
    if path.stem in NEXT:
        assert f"]({NEXT[path.stem]})" in see and "**Next:**" in see, f"{path.name}: no pointer to the next notebook"
    else:
        assert "**Next:**" in see
    questions = nb.cells[heads[-2]].source
    answers = questions.count("<details><summary>Answer</summary>")
    assert 3 <= answers <= 5 and answers == len(re.findall(r"^\d+\. ", questions, re.M)), f"{path.name}: {answers}"
    exercises = re.split(r"^\d+\. ", nb.cells[-1].source, flags=re.M)[1:]
    assert exercises, path.name
    for text in exercises:
        assert "*Hint:*" in text, f"{path.name}: an exercise without a hint: {text[:80]}"
        assert re.search(r"\((?:[^()]*\b(?:min|minutes?|seconds|no GPU|time)\b[^()]*)\)", text), (
            f"{path.name}: an exercise without its T4 cost: {text[:80]}"
        )


# Rounds of work, tracker numbers, carry folders (tests/test_history.py), and recipe lever codes such as "L2"
DEVELOPMENT = re.compile(HISTORY.pattern + r"|\(#\d+\)|(?-i:\b[DLSR]\d{1,2}\b)|(?i:\blever\b)")
MEASURED = re.compile(
    r"\d[\d.,]*\s*(GiB|tokens/s|questions/s|x faster|points)\b|\bp\s*=\s*0?\.\d|\d+\.\d+\s*%|\d+(\.\d+)?x\b"
)


def test_no_development_history_and_no_typed_measurements(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    """The notebooks speak of the lesson, not of how the project was built; measured numbers come from the records
    (read in a code cell), never typed into prose, except the one T4 line."""
    path, nb = notebook
    for source in _cells(nb, "markdown") + _cells(nb, "code"):
        found = DEVELOPMENT.search(source)
        assert not found, f"{path.name}: development history {found.group(0)!r} in:\n{source[:300]}"
    for source in _cells(nb, "markdown"):
        prose = T4_LINE.sub("", source)
        found = MEASURED.search(prose)
        assert not found, f"{path.name}: a measurement typed into the text ({found.group(0)!r}); read it from a record"


def _04() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / "04_dpo.ipynb", as_version=4)


def test_04_renders_the_dpo_comparison_from_the_records(capsys) -> None:
    """04 quotes no p-value: a cell reads the published paired comparisons (assets/results/comparisons.csv), so the
    numbers it shows are the records' (the text once said p = 0.16 where the records say 0.19)."""
    from helpers import colab

    (source,) = [s for s in _cells(_04(), "code") if "comparisons.csv" in s]
    exec(compile(source, "<04>", "exec"), {"pd": pd, "colab": colab})  # noqa: S102 - our own notebook's cell
    shown = capsys.readouterr().out
    table = pd.read_csv(REPO / "assets" / "results" / "comparisons.csv")
    rows = table[table["comparison"] == "dpo vs sft"]
    assert len(rows) and len(shown.splitlines()) == len(rows)
    for r in rows.itertuples():
        assert f"McNemar p = {r.p_value:.2f}" in shown and f"({100 * r.delta:+.1f} points on {r.n} questions)" in shown
        assert f"only SFT right {r.a_only}, only DPO right {r.b_only}" in shown
    prose = " ".join(_cells(_04(), "markdown"))
    assert not re.search(r"\bp\s*=\s*\d", prose.replace("$", "")), "a p-value typed into 04's text"


def test_04_says_once_what_its_learning_rate_is():
    """5e-6 is the rate TRL's examples use for full fine-tuning (assets/recipe/NOTES.md): said once, never called
    a LoRA scale; and no count of DPO runs that disagrees with the records is typed in."""
    prose = _cells(_04(), "markdown")
    assert [s for s in prose if "5e-6" in s] == [s for s in prose if "full fine-tuning" in s]
    assert sum("5e-6" in s for s in prose) == 1
    text = " ".join(prose)
    assert "LoRA-DPO" not in text and not re.search(r"\b(five|fourteen|eleven) (DPO|runs|settings)", text)


@pytest.mark.slow
@pytest.mark.notebook
def test_smoke_pipeline_runs_all_notebooks_in_order(ecqa_dir: Path, tmp_path: Path) -> None:
    """The main job in its smoke preset: 01 -> 05 executed headless in their order on SmolLM2, each with its form
    edited (01's choices reach the rest through ROOT/series.json); 02 builds offline pairs before 03 and on-policy
    pairs when run again after it."""
    pytest.importorskip("papermill")
    pipeline = _script("run_pipeline")
    root = pipeline.run("smoke", str(ecqa_dir), tmp_path)
    executed = sorted(p.stem for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert executed == EXPECTED and pipeline.ORDER == EXPECTED
    edits = pipeline.form_edits("smoke", str(ecqa_dir.resolve()))
    series = json.loads((root / "series.json").read_text())
    assert series == {
        "model": "smollm2-135m",
        "data_source": str(ecqa_dir.resolve()),
        "root": str(root),
        "run_size": "quick",
    }
    summary = json.loads((root / "data" / "summary.json").read_text())
    assert summary["counts"]["train"] == edits["data"]["train_sample_size"]
    from helpers import provenance

    assert provenance.read(root / "data" / "dpo_pairs.jsonl")["strategy"] == "offline"
    fallback = (tmp_path / "notebooks" / "02_pairs.ipynb").read_text()
    assert "no SFT adapter in" in fallback and "03_sft" in fallback, "02 before 03 must say why its pairs are offline"
    for variant, step in (("sft", "sft"), ("dpo", "dpo")):  # the form's edits reached the saved settings
        saved = json.loads((root / "outputs" / variant / "settings.json").read_text())
        assert edits[step] and all(saved[k] == v for k, v in edits[step].items()), (variant, edits[step], saved)
        assert saved["model"] == "smollm2-135m" and saved["run_size"] == "quick"
    results = pd.read_csv(root / "eval" / "results.csv")
    assert {"base", "sft", "dpo"} <= set(results["variant"]), results
    assert set(results["n"]) == {edits["eval"]["sample_size"]}
    assert (root / "eval" / "accuracy.png").is_file()
    # 02 again, now that 03 made an SFT adapter: on-policy pairs, as its text tells the learner
    on_policy = root / "data" / "on_policy_pairs.jsonl"
    again = {**edits, "pairs": {**edits["pairs"], "pairs_file": str(on_policy)}}
    pipeline.execute("02_pairs", tmp_path / "notebooks", again, root, suffix="-after-03")
    assert provenance.read(on_policy)["strategy"] == "on_policy" and on_policy.read_text().strip()
    assert "no SFT adapter" not in (tmp_path / "notebooks" / "02_pairs-after-03.ipynb").read_text()
    assert "sampling from the SFT adapter" in (tmp_path / "notebooks" / "02_pairs-after-03.ipynb").read_text()


SETTINGS_OF = {
    "01_data": "Settings",
    "02_pairs": "PairSettings",
    "03_sft": "SFTSettings",
    "04_dpo": "DPOSettings",
    "05_eval": "EvalSettings",
}

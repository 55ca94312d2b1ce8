"""The five notebooks: committed clean and in the shared shape (fast), and executed end to end (slow)."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import nbformat
import pandas as pd
import pytest

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


def test_has_one_parameters_cell_of_plain_assignments(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", (
        f"{path.name} needs exactly one code cell tagged parameters"
    )
    body = ast.parse(tagged[0].source).body
    assert all(isinstance(node, ast.Assign) for node in body), "the parameters cell holds only assignments"
    names = {t.id for node in body for t in node.targets}
    assert {"MODEL", "DATA_SOURCE", "ROOT", "OVERRIDES"} <= names, names


def test_papermill_reads_every_parameter(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    """Papermill's parser gives up on a line whose comment holds another '=', which silently drops it."""
    pm = pytest.importorskip("papermill")
    path, nb = notebook
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id for node in ast.parse(cell.source).body for t in node.targets}
    assert set(pm.inspect_notebook(str(path))) == assigned


def test_ends_with_check_yourself_then_exercises(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    path, nb = notebook
    *_, heading, check, exercises = nb.cells
    assert exercises.cell_type == "markdown" and exercises.source.startswith("## Exercises"), "exercises come last"
    assert heading.cell_type == "markdown" and "Check yourself" in heading.source
    assert check.cell_type == "code" and "assert" in check.source, "a 'Check yourself' cell of asserts"


@pytest.mark.slow
@pytest.mark.notebook
def test_smoke_pipeline_runs_all_notebooks(ecqa_dir: Path, tmp_path: Path) -> None:
    """The main job in its smoke preset: 01 -> 05 executed headless on SmolLM2, artifacts as promised."""
    pytest.importorskip("papermill")
    pipeline = _script("run_pipeline")
    root = pipeline.run("smoke", str(ecqa_dir), tmp_path)
    executed = sorted(p.stem for p in (tmp_path / "notebooks").glob("*.ipynb"))
    assert executed == EXPECTED
    assert (root / "data" / "dpo_pairs.jsonl").is_file()
    for variant in ("sft", "dpo"):
        assert (root / "outputs" / variant / "adapter_model.safetensors").is_file(), f"no {variant} adapter"
    for variant, notebook in (("sft", "03_sft"), ("dpo", "04_dpo")):  # the form's edits reached the saved settings
        saved = json.loads((root / "outputs" / variant / "settings.json").read_text())
        edits = pipeline.PRESETS["smoke"][notebook]["FORM_EDITS"]
        assert edits and all(saved[k] == v for k, v in edits.items()), (variant, edits, saved)
    results = pd.read_csv(root / "eval" / "results.csv")
    assert {"base", "sft", "dpo"} <= set(results["variant"]), results
    assert (root / "eval" / "accuracy.png").is_file()


SETTINGS_OF = {
    "01_data": "Settings",
    "02_pairs": "PairSettings",
    "03_sft": "SFTSettings",
    "04_dpo": "DPOSettings",
    "05_eval": "EvalSettings",
}
FIELD_OF = {"EVAL_SAMPLE_SIZE": "sample_size", "EVAL_MODES": "modes"}  # others: the field's name, upper-cased


def test_parameters_that_name_a_setting_start_at_its_default(notebook: tuple[Path, nbformat.NotebookNode]) -> None:
    """A parameter restating a settings field (papermill needs a literal) holds that field's default: the
    settings object stays the one source of truth, and a changed default cannot leave a notebook behind."""
    from helpers import settings as settings_module

    path, nb = notebook
    cls = getattr(settings_module, SETTINGS_OF[path.stem])
    defaults, names = cls(), {f.name for f in dataclasses.fields(cls)}
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    checked = []
    for node in ast.parse(cell.source).body:
        name = node.targets[0].id
        field = FIELD_OF.get(name, name.lower())
        if field in names:
            value, default = ast.literal_eval(node.value), getattr(defaults, field)
            assert value == default, (
                f"{path.name}: {name} = {value!r}, but {cls.__name__}.{field} defaults to {default!r}"
            )
            checked.append(name)
    assert {"MODEL", "DATA_SOURCE", "ROOT"} <= set(checked), checked

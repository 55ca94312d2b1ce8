"""The main job: notebooks 01 -> 05 executed headless in order, artifacts under one folder.

    python scripts/run_pipeline.py --preset demo --data ../shared/data/ecqa --out runs/demo

Presets: ``demo`` (the embedded SmolLM2-135M on CPU, a small seeded sample; `make demo`) and
``smoke`` (the smallest run that executes every cell; used by the tests). A preset is what a learner would type
into each notebook's settings form, per step; the notebooks read it from ``$MCQ_FORM_EDITS`` (see
`helpers.widgets.headless_edits`), and ``$MCQ_ROOT`` makes OUT/artifacts the default root, so no notebook cell
holds a test hook. The executed notebooks land in OUT/notebooks, the artifacts in OUT/artifacts, and the results
table is printed at the end.

The notebooks run in their numbered order, as a learner runs them: 02 comes before 03 has made an SFT adapter, so
it builds offline pairs (on-policy pairs sample the SFT model; 02 says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data", "02_pairs", "03_sft", "04_dpo", "05_eval"]
ORDER = NOTEBOOKS
STEP_OF = {"01_data": "data", "02_pairs": "pairs", "03_sft": "sft", "04_dpo": "dpo", "05_eval": "eval"}
FORM_EDITS_ENV, ROOT_ENV = "MCQ_FORM_EDITS", "MCQ_ROOT"  # read by helpers.widgets and helpers.colab

SMOL = "smollm2-135m"
# Per step, the form fields a preset sets (DATA_SOURCE stands for --data). 01's go into ROOT/series.json.
PRESETS: dict[str, dict[str, dict]] = {
    "smoke": {
        "data": {"model": SMOL, "data_source": "DATA_SOURCE", "train_sample_size": 12},
        # offline pairs (no SFT adapter yet when 02 runs); the sampling fields matter when it runs again after 03
        "pairs": {
            "train_sample_size": 12,
            "samples_per_question": 2,
            "max_new_tokens": 24,
            "batch_size": 6,
            "max_length": 384,
            "when_all_agree": "offline",  # a 3-step SFT model is rarely right: agreeing questions get the offline pair
        },
        # 3 steps of random batches, so 03's loss check compares like with like (grouping by length, the default,
        # puts the longest batch first)
        "sft": {
            "train_sample_size": 12,
            "learning_rate": 3e-4,
            "quantize": False,
            "lora_r": 8,
            "lora_alpha": 16,
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": False,
            "group_by_length": False,
            "save_steps": 2,
            "logging_steps": 1,
            "max_length": 320,
        },
        "dpo": {
            "beta": 0.2,
            "learning_rate": 1e-5,
            "max_steps": 3,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": False,
            "save_steps": 2,
            "logging_steps": 1,
            "max_length": 384,
            "compare_questions": 3,
        },
        "eval": {"sample_size": 6, "max_new_tokens": 24, "batch_size": 6},
    },
    "demo": {  # sized for <= 15 minutes on 2 CPU cores (make demo)
        "data": {"model": SMOL, "data_source": "DATA_SOURCE", "train_sample_size": 64},
        "pairs": {"train_sample_size": 64, "max_length": 448},
        "sft": {  # 16 steps of the recipe's LoRA (r64, all linear: ~1.4x the CPU time of r16 q/k/v/o)
            "train_sample_size": 64,
            "max_steps": 16,
            "per_device_train_batch_size": 8,
            "gradient_accumulation_steps": 1,
            "gradient_checkpointing": False,
            "save_steps": 8,
            "logging_steps": 2,
            "max_length": 384,
        },
        "dpo": {
            "max_steps": 6,
            "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1,
            "learning_rate": 5e-5,
            "gradient_checkpointing": False,
            "save_steps": 3,
            "logging_steps": 1,
            "max_length": 448,
            "compare_questions": 10,
        },
        "eval": {"sample_size": 40, "max_new_tokens": 96, "batch_size": 20},
    },
}


def form_edits(preset: str, data: str) -> dict[str, dict]:
    """A preset's edits per step, with ``--data`` in place of DATA_SOURCE."""
    return {
        step: {k: (data if v == "DATA_SOURCE" else v) for k, v in edits.items()}
        for step, edits in PRESETS[preset].items()
    }


@contextlib.contextmanager
def headless(edits: dict[str, dict], root: Path) -> Iterator[None]:
    """``$MCQ_FORM_EDITS`` and ``$MCQ_ROOT`` set for the notebooks' kernels (they inherit this environment)."""
    before = {k: os.environ.get(k) for k in (FORM_EDITS_ENV, ROOT_ENV)}
    os.environ[FORM_EDITS_ENV], os.environ[ROOT_ENV] = json.dumps(edits), str(root)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def execute(name: str, executed: Path, edits: dict[str, dict], root: Path, suffix: str = "") -> float:
    """Execute one notebook into ``executed/NAME{suffix}.ipynb`` with a preset's form edits; its seconds."""
    import papermill as pm

    start = time.perf_counter()
    with headless(edits, root):
        pm.execute_notebook(
            str(REPO / "notebooks" / f"{name}.ipynb"),
            str(executed / f"{name}{suffix}.ipynb"),
            cwd=str(REPO / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
        )
    return time.perf_counter() - start


def run(preset: str, data: str, out: Path, only: list[str] | None = None, times: dict | None = None) -> Path:
    """Execute the notebooks in order (seconds per notebook into ``times``); return the artifacts root."""
    out = out.resolve()
    root, executed = out / "artifacts", out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    data = str(Path(data).resolve()) if data != "hub" else data
    edits = form_edits(preset, data)
    names = [n for n in ORDER if not only or n in only]
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        seconds = execute(name, executed, edits, root)
        if times is not None:
            times[name] = seconds
        print(f"[{i}/{len(names)}] {name} done in {seconds:.0f} s", flush=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument(
        "--data", default="../shared/data/ecqa", help="ECQA folder (layout of shared/data/ecqa) or 'hub'"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--only", nargs="*", help="run only these notebooks (names like 03_sft)")
    args = parser.parse_args()
    if args.data != "hub" and not Path(args.data).is_dir():
        sys.exit(f"data folder {args.data} not found: pass --data PATH (layout of shared/data/ecqa) or --data hub")
    start = time.perf_counter()
    times: dict[str, float] = {}
    root = run(args.preset, args.data, args.out, args.only, times)
    table = root / "eval" / "results.csv"
    if table.is_file():
        import pandas as pd

        print(f"\nresults ({table}):")
        print(pd.read_csv(table).to_string(index=False))
        comparisons = root / "eval" / "comparisons.csv"
        if comparisons.is_file():
            print(pd.read_csv(comparisons).to_string(index=False))
    print("\nseconds per notebook: " + ", ".join(f"{n} {t:.0f}" for n, t in times.items()))
    print(f"pipeline finished in {time.perf_counter() - start:.0f} s; executed notebooks in {args.out / 'notebooks'}")


if __name__ == "__main__":
    main()

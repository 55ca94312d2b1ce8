"""The main job: notebooks 01 -> 05 executed headless in order, artifacts under one folder.

    python scripts/run_pipeline.py --preset demo --data ../shared/data/ecqa --out runs/demo

Presets: ``demo`` (the embedded SmolLM2-135M on CPU, a small seeded sample; `make demo`) and
``smoke`` (the smallest run that executes every cell; used by the tests). The executed
notebooks land in OUT/notebooks, the artifacts in OUT/artifacts, and the results table is
printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data", "02_pairs", "03_sft", "04_dpo", "05_eval"]
# Order matters for the artifacts: pairs need the SFT adapter when on-policy, so 03 runs before 02.
ORDER = ["01_data", "03_sft", "02_pairs", "04_dpo", "05_eval"]

COMMON = {"MODEL": "smollm2-135m", "TRAIN_SAMPLE_SIZE": 64}
PRESETS: dict[str, dict[str, dict]] = {
    "smoke": {
        "*": {**COMMON, "TRAIN_SAMPLE_SIZE": 12},
        "02_pairs": {
            "STRATEGY": "on_policy",
            # a 3-step SFT model is rarely right: questions whose samples all agree fall back to the offline pair
            "OVERRIDES": {
                "samples_per_question": 2,
                "max_new_tokens": 24,
                "batch_size": 6,
                "max_length": 384,
                "when_all_agree": "offline",
            },
        },
        # 3 steps: random batches, so 03's loss check compares like with like (grouping by length,
        # the default, puts the longest batch first). FORM_EDITS go through the settings form, as a learner's do.
        "03_sft": {
            "FORM_EDITS": {"learning_rate": 3e-4, "quantize": False, "lora_r": 8, "lora_alpha": 16},
            "OVERRIDES": {
                "max_steps": 3,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "gradient_checkpointing": False,
                "group_by_length": False,
                "save_steps": 2,
                "logging_steps": 1,
                "max_length": 320,
            },
        },
        "04_dpo": {
            "FORM_EDITS": {"beta": 0.2, "learning_rate": 1e-5},
            "OVERRIDES": {
                "max_steps": 3,
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1,
                "gradient_checkpointing": False,
                "save_steps": 2,
                "logging_steps": 1,
                "max_length": 384,
            },
        },
        "05_eval": {"EVAL_SAMPLE_SIZE": 6, "OVERRIDES": {"max_new_tokens": 24, "batch_size": 6}},
    },
    "demo": {  # sized for <= 15 minutes on 2 CPU cores (make demo)
        "*": COMMON,
        "02_pairs": {
            "STRATEGY": "on_policy",
            "TRAIN_SAMPLE_SIZE": 32,
            # a bounded sampling budget (32 questions x 4 samples x at most 80 tokens) keeps the demo near 15 minutes
            # a 16-step SFT model is rarely right: questions whose samples all agree fall back to the offline pair
            "OVERRIDES": {
                "samples_per_question": 4,
                "max_new_tokens": 80,
                "batch_size": 32,
                "max_length": 448,
                "when_all_agree": "offline",
            },
        },
        "03_sft": {
            "OVERRIDES": {  # 16 steps of the recipe's LoRA (r64, all linear: ~1.4x the CPU time of r16 q/k/v/o)
                "max_steps": 16,
                "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 1,
                "gradient_checkpointing": False,
                "save_steps": 8,
                "logging_steps": 2,
                "max_length": 384,
            }
        },
        "04_dpo": {
            "OVERRIDES": {
                "max_steps": 6,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "learning_rate": 5e-5,
                "gradient_checkpointing": False,
                "save_steps": 3,
                "logging_steps": 1,
                "max_length": 448,
            }
        },
        "05_eval": {"EVAL_SAMPLE_SIZE": 40, "OVERRIDES": {"max_new_tokens": 96, "batch_size": 20}},
    },
}


def parameters(preset: str, notebook: str, data: str, root: Path) -> dict:
    """Papermill parameters for one notebook of a preset.

    The shared ones ("*", DATA_SOURCE, ROOT) go only to notebooks whose parameters cell declares
    them; a notebook's own ones always go (papermill warns about a name the notebook lacks).
    """
    import papermill as pm

    table = PRESETS[preset]
    declared = pm.inspect_notebook(str(REPO / "notebooks" / f"{notebook}.ipynb"))
    shared = {k: v for k, v in {**table["*"], "DATA_SOURCE": data, "ROOT": str(root)}.items() if k in declared}
    return {**shared, **table.get(notebook, {})}


def run(preset: str, data: str, out: Path, only: list[str] | None = None, times: dict | None = None) -> Path:
    """Execute the notebooks in order (seconds per notebook into ``times``); return the artifacts root."""
    import papermill as pm

    out = out.resolve()
    root, executed = out / "artifacts", out / "notebooks"
    executed.mkdir(parents=True, exist_ok=True)
    data = str(Path(data).resolve()) if data != "hub" else data
    names = [n for n in ORDER if not only or n in only]
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        pm.execute_notebook(
            str(REPO / "notebooks" / f"{name}.ipynb"),
            str(executed / f"{name}.ipynb"),
            parameters=parameters(preset, name, data, root),
            cwd=str(REPO / "notebooks"),
            kernel_name="python3",
            progress_bar=False,
        )
        seconds = time.perf_counter() - start
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

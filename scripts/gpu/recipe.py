"""Recipe levers for SmolLM2-135M on the held-out slice of train (never validation), several runs at once on one GPU.

    python scripts/gpu/recipe.py sft L0 L1 L2 ...          # SFT levers, each evaluated on the 500 held-out questions
    python scripts/gpu/recipe.py dpo --sft L2 D0 D1 ...     # DPO levers from one SFT lever's adapter (same slice)

Each lever is a set of settings fields on top of `BASE` and runs as the project's own command line
(``python -m helpers sft|pairs|dpo|eval``) under its own root ``$RECIPE_ROOT/<lever>``; levers run as
parallel processes (a 135M model leaves the GPU mostly idle: decoding and small steps are bound by kernel
launches on the host). Prints one row per lever (held-out CoT accuracy, parse failures, the most frequent
predicted letter's share, cloze accuracy) and writes them to ``$OUT/recipe-<phase>.json``. The predictions
and results are in assets/recipe/NOTES.md. Needs a CUDA GPU (see scripts/gpu/setup.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASE = {"model": "smollm2-135m", "holdout_size": 500, "seed": 42}
FAST = {"gradient_checkpointing": False, "save_steps": 200}  # speed only: the same optimisation
ALL64 = {"target_modules": "all-linear", "lora_r": 64, "lora_alpha": 128}
SFT_LEVERS: dict[str, dict] = {  # one lever changed at a time against L0 (bf16 base, no 4-bit, for screening)
    "L0": {"quantize": False},  # today's recipe: LoRA r16 on q/k/v/o, lr 2e-4, 1 epoch
    "L0q": {"quantize": True},  # the same on a 4-bit base (QLoRA): does 4-bit rank levers as bf16 does?
    "L1": {"quantize": False, "target_modules": "all-linear"},
    "L2": {"quantize": False, **ALL64},
    "L2q": {"quantize": True, **ALL64},
    "L3": {"quantize": False, **ALL64, "num_train_epochs": 2.0},
    "L4": {"quantize": False, **ALL64, "answer_format": "letter+text"},
    "L5": {"quantize": False, **ALL64, "learning_rate": 5e-4},
    "L6": {"quantize": False, **ALL64, "num_train_epochs": 2.0, "answer_format": "letter+text"},
}
DPO_LEVERS: dict[str, dict] = {  # from the chosen SFT lever's adapter, on-policy pairs sampled from it
    "D0": {"learning_rate": 5e-6, "beta": 0.1},
    "D1": {"learning_rate": 5e-6, "beta": 0.1, "nll_weight": 1.0},
    "D2": {"learning_rate": 2e-5, "beta": 0.1, "nll_weight": 1.0},
    "D3": {"learning_rate": 5e-6, "beta": 0.3, "nll_weight": 1.0},
    "D4": {"learning_rate": 5e-7, "beta": 0.1},
}
PAIRS = {
    "strategy": "on_policy",
    "samples_per_question": 8,
    "temperature": 0.9,
    "when_all_agree": "skip",
    "batch_size": 512,
    "max_new_tokens": 160,
}
EVAL = {"split": "holdout", "modes": "cot,cloze", "batch_size": 256}


SMOKE = {  # --smoke: the same commands, tiny, on CPU (checks the script itself)
    "sft": {"train_sample_size": 8, "max_steps": 2, "per_device_train_batch_size": 2, "group_by_length": False},
    "dpo": {"max_steps": 1, "per_device_train_batch_size": 2},
    "pairs": {"train_sample_size": 8, "samples_per_question": 2, "max_new_tokens": 16},
    "eval": {"sample_size": 3, "max_new_tokens": 16},
}


def cli(step: str, root: Path, values: dict) -> list[str]:
    """``python -m helpers STEP --field value ...`` under ``root``."""
    merged = {**BASE, "data_source": os.environ.get("ECQA_DATA", "../shared/data/ecqa"), "root": str(root), **values}
    if os.environ.get("RECIPE_SMOKE"):
        merged.update(SMOKE[step], quantize=None if merged.get("quantize") else merged.get("quantize"))
    args = [sys.executable, "-m", "helpers", step]
    for k, v in merged.items():
        args += [f"--{k}", "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)]
    return args


DEADLINE = time.time() + float(os.environ.get("RECIPE_SECONDS", "1e9"))  # jobs still running then are stopped


def run_job(name: str, commands: list[list[str]], logs: Path) -> float:
    """Run a lever's commands one after the other; its log goes to ``logs/<name>.log``. Returns seconds
    (-1 when a command failed or was stopped at the deadline)."""
    start = time.perf_counter()
    with open(logs / f"{name}.log", "w") as log:
        for cmd in commands:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            try:
                done = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, timeout=max(1, DEADLINE - time.time())
                )
            except subprocess.TimeoutExpired:
                log.write("stopped at the deadline\n")
                return -1.0
            if done.returncode:
                log.write(f"exit {done.returncode}\n")
                return -1.0
    return time.perf_counter() - start


def holdout_row(name: str, root: Path, variant: str, seconds: float) -> dict:
    """One lever's held-out results from its records: accuracy, parse failures, letter shares, cloze."""
    import pandas as pd

    from helpers.jsonl import read_jsonl

    row: dict = {"lever": name, "variant": variant, "seconds": round(seconds)}
    for mode in ("cot", "cloze"):
        recs = pd.DataFrame(read_jsonl(root / "eval-holdout" / f"{variant}-{mode}-holdout.jsonl"))
        if recs.empty:
            continue
        row[f"{mode}_acc"] = round(100 * recs["correct"].mean(), 1)
        if mode == "cot":
            row["parse_fail"] = round(100 * recs["parsed"].isna().mean(), 1)
            shares = recs["parsed"].value_counts(normalize=True)
            row["top_letter"] = f"{shares.index[0]} {100 * shares.iloc[0]:.0f}%" if len(shares) else "-"
            row["mean_tokens"] = round(recs["new_tokens"].mean(), 1)
    summary = root / "outputs" / variant / "train_summary.json"
    if summary.is_file():
        row["train_tokens_per_s"] = round(json.loads(summary.read_text()).get("tokens_per_s", 0))
    return row


def diagnose_qlora(top: Path, logs: Path) -> list[dict]:
    """The 4-bit L0q adapter evaluated three ways: on its 4-bit base (as trained), merged into that base
    dequantized (the project's path), and merged into the original full-precision weights (the old path)."""
    ways = {"as-trained-4bit": True, "merged-dequantized": False, "merged-original": False}
    jobs = {}
    for way, quantize in ways.items():
        root = top / f"L0q-{way}"
        shutil.copytree(top / "L0q" / "outputs" / "sft", root / "outputs" / "sft", dirs_exist_ok=True)
        if way == "merged-original":  # forget that it was a QLoRA run: merged into the original weights
            prov = root / "outputs" / "sft" / "provenance.json"
            prov.write_text(json.dumps({**json.loads(prov.read_text()), "quantized": False}))
        jobs[f"L0q-{way}"] = (root, [cli("eval", root, {**EVAL, "quantize": quantize, "variants": "sft"})])
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        seconds = dict(zip(jobs, pool.map(lambda n: run_job(n, jobs[n][1], logs), jobs)))
    return [holdout_row(n, r, "sft", seconds[n]) for n, (r, _) in jobs.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("sft", "dpo"))
    parser.add_argument("levers", nargs="+")
    parser.add_argument("--sft", help="dpo phase: the SFT lever whose adapter DPO starts from")
    parser.add_argument("--base", action="store_true", help="also evaluate the base model on the slice")
    parser.add_argument("--smoke", action="store_true", help="tiny runs on CPU: checks the script, measures nothing")
    parser.add_argument("--parallel", type=int, default=3, help="levers at once (8 at once ran each ~5x slower)")
    args = parser.parse_args()
    if args.smoke:
        os.environ["RECIPE_SMOKE"] = "1"
    top = Path(os.environ.get("RECIPE_ROOT", "/tmp/recipe"))
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    logs = top / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, tuple[Path, str, list[list[str]]]] = {}
    if args.base:
        root = top / "base"
        jobs["base"] = (root, "base", [cli("eval", root, {**EVAL, "variants": "base"})])
    for name in args.levers:
        if args.phase == "sft":
            root = top / name
            lever = {**FAST, **SFT_LEVERS[name]}
            quant = {"quantize": lever.get("quantize")}
            jobs[name] = (
                root,
                "sft",
                [cli("sft", root, lever), cli("eval", root, {**EVAL, **quant, "variants": "sft"})],
            )
        else:
            sft_root = top / args.sft
            root = top / f"{args.sft}-{name}"
            shutil.copytree(sft_root / "outputs" / "sft", root / "outputs" / "sft", dirs_exist_ok=True)
            sft_settings = json.loads((sft_root / "outputs" / "sft" / "settings.json").read_text())
            shared = {k: sft_settings[k] for k in ("quantize", "answer_format") if k in sft_settings}
            pairs = [] if (root / "data").exists() else [cli("pairs", root, {**PAIRS, **shared})]
            jobs[name] = (
                root,
                name,
                [
                    *pairs,
                    cli(
                        "dpo", root, {**FAST, "quantize": shared.get("quantize"), "variant": name, **DPO_LEVERS[name]}
                    ),
                    cli("eval", root, {**EVAL, "quantize": shared.get("quantize"), "variants": name}),
                ],
            )
    if args.phase == "dpo":  # sample the pairs once, then share them
        first = next(iter(jobs.values()))
        subprocess.run(first[2][0], check=True)
        for root, _, _cmds in jobs.values():
            if root != first[0]:
                shutil.copytree(first[0] / "data", root / "data", dirs_exist_ok=True)
        jobs = {n: (r, v, cmds[1:]) for n, (r, v, cmds) in jobs.items()}
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        seconds = dict(zip(jobs, pool.map(lambda n: run_job(n, jobs[n][2], logs), jobs)))
    rows = [holdout_row(n, r, v, seconds[n]) for n, (r, v, _) in jobs.items()]
    if args.phase == "sft" and "L0q" in jobs and not args.smoke:
        rows += diagnose_qlora(top, logs)
    result = {
        "phase": args.phase,
        "sft": args.sft,
        "levers": {n: SFT_LEVERS.get(n) or DPO_LEVERS.get(n) for n in jobs},
        "device": _device(),
        "rows": rows,
    }
    (out / f"recipe-{args.phase}.json").write_text(json.dumps(result, indent=1) + "\n")
    subprocess.run(["tar", "czf", str(out / f"recipe-{args.phase}-logs.tgz"), "-C", str(top), "logs"], check=False)
    import pandas as pd

    print(pd.DataFrame(rows).to_string(index=False))


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    main()

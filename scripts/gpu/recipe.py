"""Recipe levers for SmolLM2-135M on the held-out slice of train (never validation), several runs at once on one GPU.

    R="python scripts/gpu/recipe.py"
    $R list                                               # every lever's name and settings
    $R sft sft-r16-qkvo sft-r64-all-linear ...            # SFT levers, each evaluated on the 500 held-out questions
    $R dpo --sft sft-r64-all-linear dpo-lr5e-6-beta0.1 ...  # DPO levers from one SFT lever's adapter (same slice)
    $R dpo --sft best:sft-r64-all-linear same             # on-policy DPO again, from the best DPO lever so far
    $R star --sft sft-r64-all-linear star-r64-all-linear  # STaR: SFT again on that SFT's own correct explanations
    $R publish --sft sft-r64-all-linear --dpo best        # that SFT and the best DPO (held-out) on validation

Each lever is a set of settings fields on top of `BASE`, named by them (`SFT_LEVERS`, `DPO_LEVERS`, `STAR_LEVERS`),
and runs as the project's own command line (``python -m helpers sft|pairs|dpo|eval``) under its own root
``$RECIPE_ROOT/<lever>``, or ``$RECIPE_ROOT/<start>__<lever>`` for a lever that starts from another's adapter;
levers run as parallel processes (a 135M model leaves the GPU mostly idle: decoding and small steps are bound by
kernel launches on the host). Prints one row per lever (held-out CoT accuracy, parse failures, the most frequent
predicted letter's share, cloze accuracy), appends each to ``$OUT/recipe-<phase>-rows.jsonl`` as it finishes
and writes them all to ``$OUT/recipe-<phase>.json``. ``RECIPE_SECONDS`` stops jobs still running after that many
seconds (their rows say ``seconds: -1``). The predictions and results are in assets/recipe/NOTES.md, whose files
name the levers by the short names in `PUBLISHED_NAMES` (accepted here too). Needs a CUDA GPU and what
``bash scripts/gpu/bundle.sh`` builds (gpu-bundle/1 for the wheels and data, /2 and /3 for SmolLM2's GGUF), laid out
by ``. scripts/gpu/setup.sh`` on the GPU machine (it sets ``ECQA_DATA``); ``--smoke`` checks the script on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

BASE = {"model": "smollm2-135m", "holdout_size": 500, "seed": 42, "run_size": "full"}  # sizes as each lever sets
DATA = os.environ.get("ECQA_DATA", "../shared/data/ecqa")  # the ECQA folder (scripts/gpu/setup.sh sets it)
FAST = {"gradient_checkpointing": False, "save_steps": 200}  # speed only: the same optimisation
ALL64 = {"target_modules": "all-linear", "lora_r": 64, "lora_alpha": 128}
PAIRS_KEY = "pairs"  # in a DPO lever: pair settings of its own, built from the shared samples
THEN = "__"  # in a root's name, between the lever whose adapter a run starts from and the run's own lever
# One lever changed at a time against sft-r16-qkvo (bf16 base, no 4-bit, for screening), each named by what it sets:
# LoRA rank and layers, "4bit" for a quantized base, epochs, answer format, learning rate.
SFT_LEVERS: dict[str, dict] = {
    "sft-r16-qkvo": {"quantize": False},  # the recipe the screen started from: LoRA r16 on q/k/v/o, lr 2e-4, 1 epoch
    "sft-r16-qkvo-4bit": {"quantize": True},  # the same on a 4-bit base (QLoRA): does 4-bit rank levers as bf16 does?
    "sft-r16-all-linear": {"quantize": False, "target_modules": "all-linear"},
    "sft-r64-all-linear": {"quantize": False, **ALL64},
    "sft-r64-all-linear-4bit": {"quantize": True, **ALL64},
    "sft-r64-all-linear-2epochs": {"quantize": False, **ALL64, "num_train_epochs": 2.0},
    "sft-r64-all-linear-letter+text": {"quantize": False, **ALL64, "answer_format": "letter+text"},
    "sft-r64-all-linear-lr5e-4": {"quantize": False, **ALL64, "learning_rate": 5e-4},
    "sft-r64-all-linear-2epochs-letter+text": {
        "quantize": False,
        **ALL64,
        "num_train_epochs": 2.0,
        "answer_format": "letter+text",
    },
}
QLORA_LEVER = "sft-r16-qkvo-4bit"  # evaluated three ways (`qlora_diagnosis`)
# Every train question sampled (4 each): what STaR and DPO on pairs from all questions start from.
STAR_SAMPLES = {"train_sample_size": None, "samples_per_question": 4, "batch_size": 4096}
# From the chosen SFT lever's adapter, on-policy pairs sampled from it (variant "dpo"), each named by its learning
# rate, beta, NLL weight (if any) and pairs (if its own: up to 4 per question, or one from every train question).
DPO_LEVERS: dict[str, dict] = {
    "dpo-lr5e-6-beta0.1": {"learning_rate": 5e-6, "beta": 0.1},
    "dpo-lr5e-6-beta0.1-nll1": {"learning_rate": 5e-6, "beta": 0.1, "nll_weight": 1.0},
    "dpo-lr2e-5-beta0.1-nll1": {"learning_rate": 2e-5, "beta": 0.1, "nll_weight": 1.0},
    "dpo-lr5e-6-beta0.3-nll1": {"learning_rate": 5e-6, "beta": 0.3, "nll_weight": 1.0},
    "dpo-lr5e-7-beta0.1": {"learning_rate": 5e-7, "beta": 0.1},
    # Added 2026-11-28 (assets/recipe/NOTES.md): at lr 5e-6 the loss stayed at 0.693 (margins ~0.02), so the policy
    # never moved. LoRA wants ~10x a full fine-tune's learning rate ("LoRA Without Regret"), and one pair per
    # question wastes samples.
    "dpo-lr5e-5-beta0.1": {"learning_rate": 5e-5, "beta": 0.1},
    "dpo-lr5e-5-beta0.1-4pairs": {"learning_rate": 5e-5, "beta": 0.1, PAIRS_KEY: {"pairs_per_question": 4}},
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {"pairs_per_question": 4},
    },
    "dpo-lr2e-4-beta0.1-4pairs": {"learning_rate": 2e-4, "beta": 0.1, PAIRS_KEY: {"pairs_per_question": 4}},
    # The same as dpo-lr5e-5-beta0.1-nll0.2-4pairs on pairs from every train question (the STaR samples, 4 each; one
    # pair per question).
    "dpo-lr5e-5-beta0.1-nll0.2-all-questions": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {**STAR_SAMPLES, "pairs_per_question": 1},
    },
    # Added 2026-12-07 (assets/recipe/NOTES.md, predictions first): pairs aimed at what SFT leaves wrong, and a
    # bounded loss, each on top of dpo-lr5e-5-beta0.1-nll0.2-4pairs (the last, all three pair levers together).
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs-failures-first": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {"pairs_per_question": 4, "rejected_first": "failure"},
    },
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs-unsure": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {"pairs_per_question": 4, "weight_unsure": True},
    },
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs-gold": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {"pairs_per_question": 4, "when_all_agree": "gold"},
    },
    "dpo-lr5e-5-beta0.1-nll0.2-ipo-4pairs": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        "loss_type": "ipo",
        PAIRS_KEY: {"pairs_per_question": 4},
    },
    # Added 2026-12-08 (assets/recipe/NOTES.md): at a temperature SFT's samples hardly ever loop (0.4% without an
    # answer line at T=0.7), so failures-first has almost nothing to reject; the greedy answer, where loops happen,
    # joins the samples (pairs resampled under this lever's root).
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs-greedy-failures-first": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {"pairs_per_question": 4, "rejected_first": "failure", "greedy_sample": True},
    },
    "dpo-lr5e-5-beta0.1-nll0.2-4pairs-failures-first-unsure-gold": {
        "learning_rate": 5e-5,
        "beta": 0.1,
        "nll_weight": 0.2,
        PAIRS_KEY: {
            "pairs_per_question": 4,
            "rejected_first": "failure",
            "weight_unsure": True,
            "when_all_agree": "gold",
        },
    },
}
PAIRS = {
    "strategy": "on_policy",
    "samples_per_question": 8,
    "temperature": 0.9,
    "when_all_agree": "skip",
    "batch_size": 2048,  # 256 questions x 8: decoding a 135M model is bound by launches, not memory
    "max_new_tokens": 160,
    "train_sample_size": 1000,  # 8,000 samples: a few minutes on one GPU
}
STAR_LEVERS: dict[str, dict] = {  # SFT from the base again, on data whose explanations come from the samples
    # STaR with sft-r64-all-linear's settings: where the start model got a question right, one of its own correct
    # explanations replaces ECQA's (seeded choice), elsewhere ECQA's stays (same questions, same held-out slice).
    "star-r64-all-linear": {"quantize": False, **ALL64},
}
# The short names under which the levers ran: the keys of the result files in assets/recipe/ ("levers", "rows") and
# the names of their logs (the run-*/ folders there), with the lever each stands for. A short name, or a
# published root (short names joined by "-": one lever run from another's adapter), is accepted wherever a lever's
# name is.
PUBLISHED_NAMES = {
    "L0": "sft-r16-qkvo",
    "L0q": "sft-r16-qkvo-4bit",
    "L1": "sft-r16-all-linear",
    "L2": "sft-r64-all-linear",
    "L2q": "sft-r64-all-linear-4bit",
    "L3": "sft-r64-all-linear-2epochs",
    "L4": "sft-r64-all-linear-letter+text",
    "L5": "sft-r64-all-linear-lr5e-4",
    "L6": "sft-r64-all-linear-2epochs-letter+text",
    "D0": "dpo-lr5e-6-beta0.1",
    "D1": "dpo-lr5e-6-beta0.1-nll1",
    "D2": "dpo-lr2e-5-beta0.1-nll1",
    "D3": "dpo-lr5e-6-beta0.3-nll1",
    "D4": "dpo-lr5e-7-beta0.1",
    "D5": "dpo-lr5e-5-beta0.1",
    "D6": "dpo-lr5e-5-beta0.1-4pairs",
    "D7": "dpo-lr5e-5-beta0.1-nll0.2-4pairs",
    "D8": "dpo-lr2e-4-beta0.1-4pairs",
    "D9": "dpo-lr5e-5-beta0.1-nll0.2-all-questions",
    "S1": "star-r64-all-linear",
}


def lever_name(name: str) -> str:
    """A lever's or root's name as this script gives it: a published short name (`PUBLISHED_NAMES`) translated, a
    published root's short names translated and joined with `THEN`; any other name as it is."""
    parts = name.split("-")
    if all(p in PUBLISHED_NAMES for p in parts):
        return THEN.join(PUBLISHED_NAMES[p] for p in parts)
    return name


EVAL = {"split": "holdout", "modes": "cot,cloze", "batch_size": 256}
PUBLISH_MODES = {  # two evaluations, cot@k (8 samples each) last, 128 questions a batch: at 32 (batch 256) the SFT
    # model's cot@k got through 384 of 1,221 questions in one call of the device runner; batching is not part of a
    # record's provenance, but in cot@k it changes which samples are drawn (sampling is seeded once per call)
    "cot,cloze,letter,letter-cyclic": {},
    "cot@k": {"batch_size": 1024},
}


SMOKE = {  # --smoke: the same commands, tiny, on CPU (checks the script itself)
    "sft": {"train_sample_size": 8, "max_steps": 2, "per_device_train_batch_size": 2, "group_by_length": False},
    "dpo": {"max_steps": 1, "per_device_train_batch_size": 2},
    "pairs": {"train_sample_size": 8, "samples_per_question": 2, "max_new_tokens": 16},
    "eval": {"sample_size": 3, "max_new_tokens": 16},
}


def cli(step: str, root: Path, values: dict) -> list[str]:
    """``python -m helpers STEP --field value ...`` under ``root``."""
    merged = {**BASE, "data_source": DATA, "root": str(root), **values}
    if os.environ.get("RECIPE_SMOKE"):
        merged.update(SMOKE[step], quantize=None if merged.get("quantize") else merged.get("quantize"))
    args = [sys.executable, "-m", "helpers", step]
    for k, v in merged.items():
        args += [f"--{k}", "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)]
    return args


DEADLINE = time.time() + float(os.environ.get("RECIPE_SECONDS", "1e9"))  # jobs still running then are stopped


Step = list[str] | Callable[[], None]  # a command line, or a function run between two of them


def run_job(name: str, commands: list[Step], logs: Path) -> float:
    """Run a lever's commands one after the other; its log goes to ``logs/<name>.log``. Returns seconds
    (-1 when a command failed or was stopped at the deadline)."""
    start = time.perf_counter()
    with open(logs / f"{name}.log", "w") as log:
        for cmd in commands:
            if callable(cmd):
                cmd()
                continue
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

    row: dict = {"lever": name, "root": root.name, "variant": variant, "seconds": round(seconds)}
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


QLORA_WAYS = {"as-trained-4bit": True, "merged-dequantized": False, "merged-original": False}


def qlora_diagnosis(top: Path) -> list[Step]:
    """Steps that evaluate the 4-bit `QLORA_LEVER` adapter three ways, after its training: on its 4-bit base (as
    trained), merged into that base dequantized (the project's path), and merged into the original
    full-precision weights (the old path, which forgot that the adapter was trained against 4-bit weights)."""
    steps: list[Step] = []
    for way, quantize in QLORA_WAYS.items():
        root = top / f"{QLORA_LEVER}{THEN}{way}"

        def copy(root: Path = root, way: str = way) -> None:
            shutil.copytree(top / QLORA_LEVER / "outputs" / "sft", root / "outputs" / "sft", dirs_exist_ok=True)
            if way == "merged-original":  # forget that it was a QLoRA run: merged into the original weights
                prov = root / "outputs" / "sft" / "provenance.json"
                prov.write_text(json.dumps({**json.loads(prov.read_text()), "quantized": False}))

        steps += [copy, cli("eval", root, {**EVAL, "quantize": quantize, "variants": "sft"})]
    return steps


@dataclass
class Job:
    """One lever: its root, the variant it evaluates, its steps, and the roots of extra rows (the QLoRA ways)."""

    root: Path
    variant: str
    steps: list[Step]
    extra: dict[str, Path] = field(default_factory=dict)


def sft_jobs(top: Path, levers: list[str]) -> dict[str, Job]:
    jobs = {}
    for name in levers:
        root = top / name
        lever = {**FAST, **SFT_LEVERS[name]}
        steps: list[Step] = [
            cli("sft", root, lever),
            cli("eval", root, {**EVAL, "quantize": lever.get("quantize"), "variants": "sft"}),
        ]
        extra = {}
        if name == QLORA_LEVER and not os.environ.get("RECIPE_SMOKE"):
            steps = steps[:1] + qlora_diagnosis(top)  # its own evaluation is the as-trained way
            extra = {f"{name}{THEN}{way}": top / f"{name}{THEN}{way}" for way in QLORA_WAYS}
        jobs[name] = Job(root, "sft", steps, extra)
    return jobs


def adapter_of(root: Path) -> Path:
    """A lever's adapter: its DPO adapter for a DPO lever (on-policy DPO run again starts there; its root also holds
    the SFT adapter it started from), else its SFT adapter."""
    dpo = root / "outputs" / "dpo"
    return dpo if dpo.is_dir() else root / "outputs" / "sft"


def best(top: Path, phase: str, start: str = "") -> str:
    """The root name of the lever with the best held-out CoT accuracy among ``phase``'s rows so far (ties: the
    first), among those that started from ``start``'s adapter if given: the rule that picks what is published,
    never validation."""
    rows = [json.loads(line) for line in (top / f"recipe-{phase}-rows.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "cot_acc" in r and r["seconds"] >= 0]
    rows = [r for r in rows if not start or r.get("root", "").startswith(start + THEN)]
    return max(rows, key=lambda r: r["cot_acc"])["root"]


def sampled(top: Path, start: str, name: str, sampling: dict) -> tuple[Path, dict]:
    """Samples (and pairs) from ``start``'s adapter under ``<start>__<name>``, drawn once; returns that root and
    the settings every later step shares with the start (quantize, answer_format)."""
    adapter = adapter_of(top / start)
    settings = json.loads((adapter / "settings.json").read_text())
    shared = {k: settings[k] for k in ("quantize", "answer_format") if k in settings}
    root = top / f"{start}{THEN}{name}"
    shutil.copytree(adapter, root / "outputs" / "sft", dirs_exist_ok=True)
    if not (root / "data" / "dpo_pairs.jsonl").is_file():
        subprocess.run(cli("pairs", root, {**PAIRS, **shared, **sampling}), check=True)
    return root, shared


def dpo_jobs(top: Path, start: str, levers: list[str]) -> dict[str, Job]:
    """DPO levers from one lever's adapter (an SFT lever, or a DPO lever's root for on-policy DPO again);
    the samples are drawn once (first) and shared, the pairs built per lever when it sets its own."""
    pairs_root, shared = sampled(top, start, "pairs", {})
    jobs = {}
    for name in levers:
        root = top / f"{start}{THEN}{name}"
        shutil.copytree(pairs_root, root, dirs_exist_ok=True)
        lever = dict(DPO_LEVERS[name])
        own_pairs = lever.pop(PAIRS_KEY, None)
        dpo = {**FAST, "quantize": shared.get("quantize"), "variant": "dpo", "eval_fraction": 0.0, **lever}
        steps: list[Step] = [
            cli("dpo", root, dpo),
            cli("eval", root, {**EVAL, "quantize": shared.get("quantize"), "variants": "dpo"}),
        ]
        if own_pairs:  # the same samples (their provenance matches), other pairs
            steps.insert(0, cli("pairs", root, {**PAIRS, **shared, **own_pairs}))
            if STAR_SAMPLES.items() <= own_pairs.items():  # sampled as the star phase samples: reuse them
                steps.insert(0, partial(copy_star_samples, top / f"{start}{THEN}star", root))
        jobs[name] = Job(root, "dpo", steps)
    return jobs


def copy_star_samples(star: Path, root: Path) -> None:
    """Every train question's samples (`sampled` with `STAR_SAMPLES`), drawn once, into a lever's root."""
    if (star / "data").is_dir():
        shutil.copytree(star / "data", root / "data", dirs_exist_ok=True)


def star_data(samples: Path, source: Path, out: Path, seed: int) -> dict:
    """A data folder like ``source`` whose explanations are, for each question the model got right, one of its
    own correct explanations (`answers.rationale`: a clean explanation then one final answer line; seeded
    choice), ECQA's elsewhere. Same questions and ids, so the same held-out slice. Returns counts."""
    import gzip
    import random

    from helpers.answers import extract_answer, rationale
    from helpers.data import load_ecqa
    from helpers.jsonl import read_jsonl

    gold = dict(zip(*(load_ecqa(source)["train"][k] for k in ("id", "answer"))))
    own: dict[str, str] = {}
    rows = read_jsonl(samples)
    for row in rows:
        good = [r for t in row["samples"] if extract_answer(t) == gold.get(row["id"]) and (r := rationale(t))]
        if good:
            own[row["id"]] = random.Random(f"{seed}-{row['id']}").choice(good)
    out.mkdir(parents=True, exist_ok=True)
    for f in source.iterdir():
        if f.name != "ecqa_explanations.jsonl.gz":
            shutil.copy(f, out / f.name)
    with (
        gzip.open(source / "ecqa_explanations.jsonl.gz", "rt") as src,
        gzip.open(out / "ecqa_explanations.jsonl.gz", "wt") as dst,
    ):
        for line in src:
            row = json.loads(line)
            dst.write(json.dumps({**row, "explanation": own.get(row.get("id"), row.get("explanation"))}) + "\n")
    counts = {"questions_sampled": len(rows), "own_explanations": len(own)}
    (out / "star_counts.json").write_text(json.dumps(counts) + "\n")
    return counts


def star_jobs(top: Path, start: str, levers: list[str]) -> dict[str, Job]:
    """STaR levers: SFT from the base again on data whose explanations are ``start``'s own correct ones."""
    star, _ = sampled(top, start, "star", STAR_SAMPLES)
    samples = star / "data" / "dpo_pairs_samples.jsonl"
    jobs = {}
    for name in levers:
        root = top / f"{start}{THEN}{name}"
        folder = {"data_source": str(root / "ecqa")}
        lever = {**FAST, **STAR_LEVERS[name], **folder}
        steps: list[Step] = [
            partial(star_data, samples, Path(DATA), root / "ecqa", BASE["seed"]),
            cli("sft", root, lever),
            cli("eval", root, {**EVAL, "quantize": lever.get("quantize"), "variants": "sft", **folder}),
        ]
        jobs[name] = Job(root, "sft", steps)
    return jobs


def publish(top: Path, sft: str, dpo: str, variants: list[str], logs: Path, out: Path, parallel: int) -> None:
    """The chosen SFT and DPO adapters (and the base, if asked) on all of validation in every mode, unquantized
    (a 4-bit copy of a 135M base dequantized from a 4-bit GGUF cannot generate), one process per variant;
    records, settings and pairs go to ``$OUT``."""
    adapters = {"sft": adapter_of(top / sft), "dpo": top / dpo / "outputs" / "dpo"}
    base = {"split": "validation", "batch_size": 256, "quantize": False}

    def one(variant: str) -> float:
        root = top / f"publish-{variant}"
        for name in () if variant == "base" else dict.fromkeys(("sft", variant)):  # sft once for "sft"
            shutil.copytree(adapters[name], root / "outputs" / name, dirs_exist_ok=True)
        commands: list[Step] = [
            cli("eval", root, {**base, "variants": variant, "modes": m, **extra}) for m, extra in PUBLISH_MODES.items()
        ]
        return run_job(f"publish-{variant}", commands, logs)

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        seconds = dict(zip(variants, pool.map(one, variants)))
    for variant in ("sft", "dpo"):
        for name in ("settings.json", "metrics.json", "train_summary.json", "provenance.json"):
            source = adapters[variant] / name
            if source.is_file():
                (out / variant).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, out / variant / name)
    subprocess.run(["tar", "czf", str(out / "pairs.tgz"), "-C", str(top / dpo), "data"], check=False)
    roots = [f"publish-{v}/eval" for v in variants]
    subprocess.run(["tar", "czf", str(out / "eval.tgz"), "-C", str(top), *roots], check=False)
    (out / "publish.json").write_text(json.dumps({"sft": sft, "dpo": dpo, "seconds": seconds}) + "\n")
    print(f"publish {sft} and {dpo}: {seconds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("sft", "dpo", "star", "publish", "list"))
    parser.add_argument("levers", nargs="*", help="levers' names (list: every lever's name and settings)")
    parser.add_argument(
        "--sft",
        help="dpo: the lever (SFT, or a DPO lever's root to run DPO again from) DPO starts from, or best:SFT_LEVER; "
        "star: the lever that samples its own explanations; publish: the SFT",
    )
    parser.add_argument(
        "--dpo",
        help=f"publish: the DPO lever's root (e.g. sft-r64-all-linear{THEN}dpo-lr5e-6-beta0.1), or 'best' (by "
        "held-out CoT)",
    )
    parser.add_argument("--variants", default="sft,dpo", help="publish: variants evaluated (base,sft,dpo)")
    parser.add_argument("--base", action="store_true", help="also evaluate the base model on the slice")
    parser.add_argument("--smoke", action="store_true", help="tiny runs on CPU: checks the script, measures nothing")
    parser.add_argument("--parallel", type=int, default=3, help="levers at once (8 at once ran each ~5x slower)")
    args = parser.parse_intermixed_args()
    if args.phase == "list":
        for name, lever in {**SFT_LEVERS, **DPO_LEVERS, **STAR_LEVERS}.items():
            print(f"{name:42} {json.dumps(lever)}")
        return
    args.levers = [lever_name(n) for n in args.levers]
    args.dpo = args.dpo if args.dpo in (None, "best") else lever_name(args.dpo)
    if args.sft:
        best_of, colon, start = args.sft.rpartition(":") if args.sft.startswith("best") else ("", "", args.sft)
        args.sft = best_of + colon + lever_name(start)
    if args.smoke:
        os.environ["RECIPE_SMOKE"] = "1"
    top = Path(os.environ.get("RECIPE_ROOT", "/tmp/recipe"))
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    logs = top / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.phase == "publish":
        dpo = best(top, "dpo") if args.dpo == "best" else args.dpo
        publish(top, args.sft, dpo, args.variants.split(","), logs, out, args.parallel)
        return
    if args.sft and args.sft.startswith(
        "best"
    ):  # "best" or "best:SFT_LEVER": the best DPO lever so far, to start from
        args.sft = best(top, "dpo", args.sft.partition(":")[2])
    if args.levers == ["same"]:  # DPO again, with the settings of the lever it starts from
        args.levers = [args.sft.rsplit(THEN, 1)[-1]]
    jobs: dict[str, Job] = {}
    if args.base:
        jobs["base"] = Job(
            top / "base", "base", [cli("eval", top / "base", {**EVAL, "quantize": False, "variants": "base"})]
        )
    phase_jobs = {
        "sft": sft_jobs,
        "dpo": partial(dpo_jobs, start=args.sft),
        "star": partial(star_jobs, start=args.sft),
    }
    jobs.update(phase_jobs[args.phase](top, levers=args.levers))
    rows_file = out / f"recipe-{args.phase}-rows.jsonl"

    def run(name: str) -> list[dict]:
        job = jobs[name]
        seconds = run_job(name, job.steps, logs)
        rows = [holdout_row(name, job.root, job.variant, seconds)]
        rows += [holdout_row(n, r, job.variant, seconds) for n, r in job.extra.items()]
        for path in {rows_file.resolve(), (top / rows_file.name).resolve()}:  # at once: a later timeout loses nothing
            with open(path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return rows

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        rows = [r for job_rows in pool.map(run, jobs) for r in job_rows]
    result = {
        "phase": args.phase,
        "sft": args.sft,
        "levers": {n: SFT_LEVERS.get(n) or DPO_LEVERS.get(n) or STAR_LEVERS.get(n) for n in jobs},
        "pairs": PAIRS if args.phase == "dpo" else None,
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

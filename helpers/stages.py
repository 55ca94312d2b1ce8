"""Whole stages, from a settings object to saved artifacts: what notebooks and command lines run.

Each stage reads its inputs from the artifacts root and writes there, so any stage can start
from the previous stage's saved artifacts. The command-line forms take a settings JSON:

    python -m helpers.sft settings/sft.json
    python -m helpers.make_pairs settings/pairs.json
    python -m helpers.dpo settings/dpo.json
    python -m helpers.evaluate settings/eval.json

SFT, DPO and evaluation also run as several processes, one per GPU (DDP; gloo on a machine without one):

    accelerate launch --multi_gpu --num_processes 2 -m helpers.sft settings/sft.json

Only the main process writes what the processes share (settings, metrics, adapter, results table);
evaluation gives each process a share of the questions and merges their records (`helpers.evaluation`).
Pairs are built by one process. (``accelerate launch --cpu`` starts one process, whatever
``--num_processes`` says: on CPU use ``--multi_gpu`` or ``torchrun --nproc_per_node N``.)

Before a model is loaded, `prepare` checks the inputs a stage needs (settings, data folder, model
folder, SFT adapter, pairs file); a problem there ends the command with one line naming the fix
(exit status 2), and nothing under the root is written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from datasets import DatasetDict

from helpers import data as data_mod
from helpers import distributed, models, training
from helpers.settings import DPOSettings, EvalSettings, PairSettings, Settings, SFTSettings

T = TypeVar("T", bound=Settings)


def load_data(s: Settings) -> DatasetDict:
    """The leak-free data the settings ask for (train sample applied)."""
    return data_mod.load_ecqa(s.data_source, train_sample_size=s.train_sample_size, seed=s.seed,
                              holdout_size=s.holdout_size)


def run_sft(s: SFTSettings, data: DatasetDict | None = None) -> training.TrainResult:
    """Train (or resume) the SFT adapter into ``root/outputs/sft``."""
    data = data or load_data(s)
    return training.train_sft(s, data["train"])


def run_pairs(s: PairSettings, data: DatasetDict | None = None) -> tuple[list[dict], Any]:
    """Build preference pairs into ``root/data/dpo_pairs.jsonl`` (on-policy samples from the SFT adapter)."""
    from helpers import pairs

    data = data or load_data(s)
    on_policy = s.strategy == "on_policy" and (s.sft_dir / "adapter_config.json").is_file()
    tok = models.load_tokenizer(models.adapter_base(s.sft_dir) if on_policy else s.model)
    built, report = pairs.build_pairs(s, tok, data["train"])  # loads the SFT adapter itself when on-policy
    pairs.write_pairs(built, s.pairs, report)
    print(report)
    return built, report


def run_dpo(s: DPOSettings, pair_ds: Any = None) -> training.TrainResult:
    """DPO from the SFT adapter on the saved pairs into ``root/outputs/<stage>``."""
    from helpers import pairs

    pair_ds = pair_ds if pair_ds is not None else pairs.read_pairs(s.pairs)
    if s.train_sample_size and s.train_sample_size < pair_ds.num_rows:  # a seeded subset of the pairs
        pair_ds = pair_ds.shuffle(seed=s.seed).select(range(s.train_sample_size))
    return training.train_dpo(s, pair_ds)


def run_eval(s: EvalSettings, data: DatasetDict | None = None) -> Any:
    """Evaluate every available stage; save records, table and chart under ``root/eval``."""
    from helpers import evaluation

    check_stages(s)
    records = evaluation.evaluate_stages(s, data=data)  # sharded over the processes when there are several
    if distributed.is_main():  # the table once, from the merged records
        evaluation.save_results(records, s.eval_dir)
    return records


# ---------------------------------------------------------------- input checks (before any model loads)
WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "*.gguf")


def check_model(name: str) -> None:
    """A local model folder must exist and hold weights; presets and Hub ids are checked when they load."""
    folder = Path(models.resolve(name)[0])  # a missing folder or one without config.json is refused here
    if folder.is_dir() and not any(any(folder.glob(pattern)) for pattern in WEIGHTS):
        raise FileNotFoundError(f"model folder {folder} has a config.json but no weights (model.safetensors or "
                                "pytorch_model.bin): copy the weights into it, or set model to a complete folder, "
                                "a Hub id or a preset")


def check_sft_adapter(s: DPOSettings | PairSettings) -> None:
    """The SFT adapter that DPO and on-policy pairs start from: present, and trained on ``s.model``."""
    if not (s.sft_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no SFT adapter in {s.sft_dir}: run notebooks/03_sft (python -m helpers.sft) with "
                                "the same root first, or set sft_adapter to its folder")
    models.sft_adapter_base(s.sft_dir, s.model, type(s).__name__)


def check_stages(s: EvalSettings) -> None:
    """At least one stage to evaluate: "base", or a stage whose adapter is under ``root/outputs``."""
    if all(st != "base" and not (s.stage_dir(st) / "adapter_config.json").is_file() for st in s.stages):
        raise FileNotFoundError(f"none of the stages {list(s.stages)} has an adapter under {s.root_dir / 'outputs'}: "
                                "train them first with the same root (notebooks/03_sft for 'sft', 04_dpo for 'dpo'), "
                                "or add 'base' to stages")


def prepare(stage: str, s: Any) -> dict[str, Any]:
    """Check a stage's inputs and load the cheap ones (data, pairs): the keyword arguments of its run.

    Raises FileNotFoundError / ValueError naming the fix (the notebook to run first, the setting to change).
    """
    check_model(s.model)
    if stage == "pairs" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("pairs are built by one process (each would sample all questions into the same file): "
                         "run python -m helpers.make_pairs without accelerate launch / torchrun")
    if stage == "dpo":
        from helpers import pairs

        check_sft_adapter(s)
        return {"pair_ds": pairs.read_pairs(s.pairs)}
    if stage == "pairs" and s.strategy == "on_policy":
        check_sft_adapter(s)
    if stage == "evaluate":
        check_stages(s)
    return {"data": load_data(s)}


STAGES: dict[str, tuple[type[Settings], Callable[..., Any]]] = {
    "sft": (SFTSettings, run_sft),
    "pairs": (PairSettings, run_pairs),
    "dpo": (DPOSettings, run_dpo),
    "evaluate": (EvalSettings, run_eval),
}


def main(stage: str, argv: list[str] | None = None) -> None:
    """Command line: ``python -m helpers.<stage> SETTINGS.json [--set key=value ...]``."""
    cls, run = STAGES[stage]
    parser = argparse.ArgumentParser(prog=f"python -m helpers.{stage}", description=run.__doc__)
    parser.add_argument("settings", help=f"a JSON file of {cls.__name__} fields (unknown keys are refused)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field; VALUE is parsed as JSON when it can be")
    args = parser.parse_args(argv)
    path = Path(args.settings)
    if not path.is_file():
        parser.error(f"settings file {path} does not exist")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        parser.error(f"settings file {path} is not valid JSON ({e}): fix it")
    if not isinstance(values, dict):
        parser.error(f"settings file {path} must hold a JSON object of {cls.__name__} fields")
    for item in args.set:
        key, eq, raw = item.partition("=")
        if not (key and eq):
            parser.error(f"--set needs KEY=VALUE, got {item!r}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    try:
        settings = cls.from_dict(values)
        inputs = prepare(stage, settings)
    except (ValueError, OSError) as e:  # the inputs are wrong: one line naming the fix, no traceback
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    start = time.perf_counter()
    run(settings, **inputs)
    print(f"{stage} finished in {time.perf_counter() - start:.1f} s")

"""Whole stages, from a settings object to saved artifacts: what notebooks and command lines run.

Each stage reads its inputs from the artifacts root and writes there, so any stage can start
from the previous stage's saved artifacts. The command-line forms take a settings JSON:

    python -m helpers.sft settings/sft.json
    python -m helpers.make_pairs settings/pairs.json
    python -m helpers.dpo settings/dpo.json
    python -m helpers.evaluate settings/eval.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from datasets import DatasetDict

from helpers import data as data_mod
from helpers import models, training
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


def run_dpo(s: DPOSettings) -> training.TrainResult:
    """DPO from the SFT adapter on the saved pairs into ``root/outputs/<stage>``."""
    from helpers import pairs

    pair_ds = pairs.read_pairs(s.pairs)
    if s.train_sample_size and s.train_sample_size < pair_ds.num_rows:  # a seeded subset of the pairs
        pair_ds = pair_ds.shuffle(seed=s.seed).select(range(s.train_sample_size))
    return training.train_dpo(s, pair_ds)


def run_eval(s: EvalSettings, data: DatasetDict | None = None) -> Any:
    """Evaluate every available stage; save records, table and chart under ``root/eval``."""
    from helpers import evaluation

    records = evaluation.evaluate_stages(s, data=data)
    evaluation.save_results(records, s.eval_dir)
    return records


STAGES: dict[str, tuple[type[Settings], Callable[[Any], Any]]] = {
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
    values = json.loads(path.read_text())
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    settings = cls.from_dict(values)
    start = time.perf_counter()
    run(settings)
    print(f"{stage} finished in {time.perf_counter() - start:.1f} s")

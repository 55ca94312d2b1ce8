"""Held-out preference accuracy: does a model prefer the chosen answer of pairs it was never trained on?

DPO's implicit reward of an answer y is beta x (log pi(y|x) - log pi_ref(y|x)), pi_ref being the SFT model. On
held-out pairs (`held_out_split`: whole questions kept out of DPO's training), `preference_report` gives

* ``policy_accuracy``: the share of pairs whose chosen side the model finds likelier (summed log-probability),
  for the SFT model (before) and the DPO model (after);
* ``reward_accuracy``: the share whose chosen side gained more log-probability than the rejected side from SFT to
  DPO, TRL's ``rewards/accuracies`` on pairs DPO did not see (before training every reward is 0, so it starts at 0).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from helpers.scoring import score_continuations


def held_out_split(
    pairs: Sequence[Mapping[str, Any]], n_questions: int, seed: int = 42
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(pairs to train on, pairs of ``n_questions`` seeded-random questions held out); a question's pairs stay
    together, so no held-out question is trained on through another of its pairs."""
    ids = sorted({str(p["id"]) for p in pairs})
    if n_questions >= len(ids) and ids:
        raise ValueError(
            f"cannot hold out {n_questions} of {len(ids)} questions: lower eval_fraction or build more pairs"
        )
    held = set(random.Random(seed).sample(ids, n_questions))
    return [p for p in pairs if str(p["id"]) not in held], [p for p in pairs if str(p["id"]) in held]


def pair_log_probs(
    model: Any, tokenizer: Any, pairs: Sequence[Mapping[str, Any]], batch_size: int = 16
) -> pd.DataFrame:
    """Summed log-probability of each pair's chosen and rejected side given its prompt (id, chosen, rejected)."""
    requests = [(p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")]
    scores = score_continuations(model, tokenizer, requests, batch_size=batch_size)
    return pd.DataFrame({"id": [p["id"] for p in pairs], "chosen": scores[0::2], "rejected": scores[1::2]})


def preference_report(before: pd.DataFrame, after: pd.DataFrame | None = None) -> dict[str, float]:
    """Accuracies of `pair_log_probs` tables of the same pairs: the SFT model's (``before``) and DPO's (``after``)."""
    report = {"pairs": len(before), "policy_accuracy_before": _share(before["chosen"] > before["rejected"])}
    if after is not None:
        if len(after) != len(before) or list(after["id"]) != list(before["id"]):
            raise ValueError("before and after must score the same pairs in the same order")
        gain_chosen, gain_rejected = after["chosen"] - before["chosen"], after["rejected"] - before["rejected"]
        report["policy_accuracy_after"] = _share(after["chosen"] > after["rejected"])
        report["reward_accuracy"] = _share(gain_chosen > gain_rejected)
        report["mean_reward_margin_per_beta"] = round(float((gain_chosen - gain_rejected).mean()), 4)
    return report


def _share(mask: pd.Series) -> float:
    return round(float(mask.mean()), 4) if len(mask) else float("nan")

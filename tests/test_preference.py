"""helpers.preference: held-out pairs kept out by question, and the accuracies before and after DPO."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers import preference


def test_a_questions_pairs_stay_on_one_side_of_the_split():
    pairs = [{"id": f"q{i // 2}", "n": i} for i in range(20)]  # two pairs per question
    train, held = preference.held_out_split(pairs, 3, seed=1)
    assert len(held) == 6 and len(train) == 14
    assert not {p["id"] for p in train} & {p["id"] for p in held}
    assert preference.held_out_split(pairs, 3, seed=1) == (train, held)  # seeded
    with pytest.raises(ValueError, match="lower eval_fraction"):
        preference.held_out_split(pairs, 10)


def test_reward_accuracy_counts_what_dpo_moved_and_policy_accuracy_what_each_model_prefers():
    before = pd.DataFrame({"id": ["a", "b", "c", "d"], "chosen": [-10, -10, -5, -8], "rejected": [-12, -9, -6, -7]})
    after = pd.DataFrame({"id": ["a", "b", "c", "d"], "chosen": [-9, -8, -7, -8], "rejected": [-14, -10, -6, -6]})
    report = preference.preference_report(before, after)
    assert report["pairs"] == 4
    assert report["policy_accuracy_before"] == 0.5  # a, c
    assert report["policy_accuracy_after"] == 0.5  # a, b
    assert report["reward_accuracy"] == 0.5  # gains: a +1 vs -2, b +2 vs -1 -> yes; c -2 vs 0, d 0 vs +1 -> no
    assert report["mean_reward_margin_per_beta"] == round((3 + 3 - 2 - 1) / 4, 4)
    assert set(preference.preference_report(before)) == {"pairs", "policy_accuracy_before"}
    with pytest.raises(ValueError, match="same pairs"):
        preference.preference_report(before, after.iloc[::-1])


@pytest.mark.slow
def test_pair_log_probs_scores_each_side_after_its_prompt(smol_model, smol_tokenizer, ecqa_loaded, torch_threads):
    from helpers import pairs as P

    tok = smol_tokenizer
    recs = list(ecqa_loaded[0]["train"].select(range(2)))
    built = P.build_offline_pairs(tok, recs, seed=0)
    table = preference.pair_log_probs(smol_model(), tok, built, batch_size=4)
    assert list(table["id"]) == [p["id"] for p in built]
    assert (table[["chosen", "rejected"]] < 0).all().all()

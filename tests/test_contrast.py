"""helpers.contrast: SFT against DPO on the same questions (04_dpo's table and the inspector's change filters)."""

from __future__ import annotations

import pytest

from helpers import contrast


def rec(variant: str, qid: str, parsed: str | None, gold: str = "A", tokens: int = 50, failure: str | None = None):
    return {
        "id": qid,
        "variant": variant,
        "mode": "cot",
        "prompt": "p",
        "output": f"{variant} says {parsed}",
        "parsed": parsed,
        "gold": gold,
        "correct": parsed == gold,
        "new_tokens": tokens,
        "failure": failure,
        "detail": None,
    }


RECORDS = [
    *(rec("sft", "q1", "A"), rec("dpo", "q1", "A")),  # unchanged, right
    *(rec("sft", "q2", "B"), rec("dpo", "q2", "A")),  # fixed
    *(rec("sft", "q3", "A"), rec("dpo", "q3", "C")),  # broken
    *(rec("sft", "q4", None, tokens=192, failure="out_of_tokens"), rec("dpo", "q4", "D")),  # changed, both wrong
    *(rec("sft", "q5", "E"), rec("dpo", "q5", "E")),  # unchanged, wrong
    rec("dpo", "q6", "A"),  # answered by one variant only: left out
]


def test_changes_sorts_every_question_both_answered():
    kinds = contrast.changes(RECORDS)
    assert kinds.to_dict() == {
        "q1": "unchanged",
        "q2": "fixed",
        "q3": "broken",
        "q4": "changed, both wrong",
        "q5": "unchanged",
    }
    assert set(kinds) <= set(contrast.CHANGES)


def test_contrast_counts_accuracy_failures_lengths_and_letters_on_the_shared_questions():
    table = contrast.contrast(RECORDS).set_index("measure")
    assert table.loc["questions", "sft"] == 5
    assert table.loc["accuracy", "sft"] == 0.4 and table.loc["accuracy", "dpo"] == 0.4
    assert table.loc["parse failures"].tolist() == [1, 0]
    assert table.loc["  loops (ran out of tokens)"].tolist() == [1, 0]
    assert table.loc["mean new tokens", "sft"] == round((4 * 50 + 192) / 5, 1)
    assert table.loc["no letter", "sft"] == 0.2 and table.loc["letter A", "dpo"] == 0.4
    assert table.loc["McNemar p (exact)", "dpo"] == 1.0  # one fixed, one broken
    assert table.loc["dpo - sft (95% interval)", "dpo"].startswith("+0.0000 [")


def test_paired_difference_interval_widens_with_disagreement_and_refuses_unpaired_lists():
    assert contrast.paired_difference([True] * 4, [True] * 4) == (0.0, 0.0, 0.0)
    diff, low, high = contrast.paired_difference([False] * 90 + [True] * 10, [True] * 20 + [False] * 80)
    assert diff == 0.1 and low < 0.1 < high
    with pytest.raises(ValueError, match="one non-zero length"):
        contrast.paired_difference([True], [True, False])


def test_a_variant_without_records_is_named_with_the_fix():
    with pytest.raises(ValueError, match=r"no cot records of \['dpo-x'\]"):
        contrast.contrast(RECORDS, b="dpo-x")


def test_the_inspectors_dpo_filters_pick_the_questions_changes_names():
    import pandas as pd

    from helpers import metrics

    kinds = contrast.changes(RECORDS)
    records = pd.DataFrame(RECORDS)
    for name, kind in (("fixed by DPO", "fixed"), ("broken by DPO", "broken"), ("changed, both wrong",) * 2):
        assert metrics.inspector_filter(records, name) == list(kinds[kinds == kind].index), name


def test_a_dpo_variant_without_a_record_of_a_question_counts_for_nothing_in_the_filters():
    import pandas as pd

    from helpers import metrics

    records = pd.DataFrame(
        [
            *(rec("sft", "q1", "A"), rec("dpo", "q1", "A")),  # both right; dpo-2 never answered q1
            *(rec("sft", "q2", "B"), rec("dpo", "q2", "B"), rec("dpo-2", "q2", "B")),  # unchanged, wrong
            *(rec("sft", "q3", "A"), rec("dpo-2", "q3", "C")),  # broken by dpo-2
        ]
    )
    assert metrics.inspector_filter(records, "broken by DPO") == ["q3"]
    assert metrics.inspector_filter(records, "changed, both wrong") == []
    assert metrics.inspector_filter(records, "fixed by DPO") == []

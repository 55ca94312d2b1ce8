"""The published tables (docs/results.md) are what the committed per-question records in assets/results compute.

A table number edited by hand, or records replaced without the tables following (or the other way round),
fails here; `python scripts/publish_results.py assets/results` prints the tables to copy from.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from helpers import metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "assets" / "results"
SECTION = "## The published SmolLM2-135M result"
SUMMED = {"cloze (summed log-prob)": "cloze (acc)"}  # else the table's mode cell up to " (" is the label


def _published_rows() -> list[list[str]]:
    text = (REPO / "docs" / "results.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    return [
        [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
    ]


@pytest.fixture(scope="module")
def computed() -> tuple[pd.DataFrame, pd.DataFrame]:
    records = metrics.records_frame(metrics.load_records(metrics.records_files(RESULTS)), 192)
    return metrics.summarize(records), metrics.paired_comparisons(records)


def _label(cell: str) -> str:
    return SUMMED.get(cell, cell.split(" (")[0])


def test_the_results_table_is_computed_from_the_records(computed):
    summary, _ = computed
    rows = [r for r in _published_rows() if r[0] in {"base", "sft", "dpo"} and len(r) == 7]
    assert len(rows) >= 15, rows
    by = summary.set_index(["variant", "label"])
    for variant, mode, accuracy, ci, *_ in rows:
        row = by.loc[(variant, _label(mode))]
        assert accuracy == f"{100 * row.accuracy:.1f}", (variant, mode)
        assert ci == f"{100 * row.ci_low:.1f}–{100 * row.ci_high:.1f}", (variant, mode)
    committed = pd.read_csv(RESULTS / "results.csv")
    assert committed[["variant", "label", "correct", "n"]].equals(summary[["variant", "label", "correct", "n"]])


def test_the_mcnemar_table_is_computed_from_the_records(computed):
    _, comparisons = computed
    rows = [r for r in _published_rows() if " vs " in r[0] and len(r) == 7]
    assert len(rows) >= 5, rows
    by = {(c.comparison, c.label): c for c in comparisons.itertuples()}
    for comparison, mode, accuracy, delta, earlier, later, p in rows:
        c = by[(comparison, mode)]
        assert accuracy == f"{100 * c.acc_a:.1f} → {100 * c.acc_b:.1f}", (comparison, mode)
        assert delta == f"{100 * c.delta:+.1f}", (comparison, mode)
        assert (int(earlier), int(later)) == (c.a_only, c.b_only), (comparison, mode)
        assert float(p) == pytest.approx(float(f"{c.p_value:.2g}"), rel=1e-9), (comparison, mode)

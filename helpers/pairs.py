"""Preference pairs for DPO, in the one prompt format, checked and written to JSONL.

Every pair is ``{"id", "prompt", "chosen", "rejected", "chosen_letter", "rejected_letter", "gold",
"kind"}``: ``prompt`` is `prompts.render_prompt`, ``chosen``/``rejected`` are
`prompts.render_completion` (both end with the end-of-turn token, the tokenizer's eos, as TRL's
DPOTrainer expects). Two strategies (`PairSettings.strategy`):

* ``offline``: the gold ECQA explanation vs a rationale for a random wrong option (`offline_pair`);
* ``on_policy``: k samples of the SFT model per question, a correct one vs a wrong one, up to
  ``pairs_per_question`` different pairs (`sample_on_policy`, `on_policy_pairs`); questions where all k
  agree fall back to the offline pair or are skipped (``when_all_agree``).

Every pair passes `check_pair`; dropped pairs are counted by reason in a `PairReport`.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import generation
from helpers.answers import LETTERS, extract_answer
from helpers.jsonl import append_jsonl, read_jsonl, write_jsonl_atomic
from helpers.prompts import answer_text, render_completion, render_prompt, target_text
from helpers.settings import PairSettings

PAIR_KEYS = ("id", "prompt", "chosen", "rejected", "chosen_letter", "rejected_letter", "gold", "kind")
OUTCOMES = ("mixed", "all correct", "all wrong")


def _rng(seed: int, record_id: str) -> random.Random:
    """One generator per question: the same wrong option whatever subset or order is built."""
    return random.Random(f"{seed}:{record_id}")


def _pair(
    tok: Any, record: Mapping[str, Any], chosen: str, rejected: str, letters: tuple[str, str], kind: str
) -> dict:
    return {
        "id": record["id"],
        "prompt": render_prompt(tok, record),
        "chosen": render_completion(tok, record, chosen),
        "rejected": render_completion(tok, record, rejected),
        "chosen_letter": letters[0],
        "rejected_letter": letters[1],
        "gold": record["answer"],
        "kind": kind,
    }


def _mention(text: str) -> str:
    """Regex for a choice text as a whole word or phrase, any spacing, optional plural either way."""
    words = text.strip().split()
    core = r"\s+".join(re.escape(w) for w in words)
    if len(words[-1]) > 3 and words[-1].lower().endswith("s"):  # "movie theaters" also matches "movie theater"
        core = core[:-1] + "s?"
    return rf"(?<![\w-]){core}(?=(?:e?s)?(?![\w-]))"


def swap_mentions(explanation: str, gold_text: str, wrong_text: str) -> tuple[str, int]:
    """Swap mentions of the gold and the wrong choice text in one pass; returns (text, gold mentions)."""
    gold, wrong = re.compile(_mention(gold_text), re.I), re.compile(_mention(wrong_text), re.I)
    # longer text first, so "theater" does not steal the match of "movie theater"
    first, second = (gold, wrong) if len(gold_text) >= len(wrong_text) else (wrong, gold)
    both = re.compile(f"(?P<a>{first.pattern})|(?P<b>{second.pattern})", re.I)
    n_gold = 0

    def repl(m: re.Match) -> str:
        nonlocal n_gold
        is_gold = (m.group("a") is not None) == (first is gold)
        n_gold += is_gold
        new = wrong_text if is_gold else gold_text
        return new[:1].upper() + new[1:] if m.group(0)[:1].isupper() else new

    return both.sub(repl, explanation), n_gold


def template_rationale(concept: str, wrong_text: str) -> str:
    """A short, confident rationale for ``wrong_text`` when the explanation never names the gold text."""
    return (
        f"The question is about {concept}. {wrong_text[:1].upper() + wrong_text[1:]} is what is most closely "
        f"connected with {concept}, so it fits best; the other options do not fit as well."
    )


def offline_pair(
    tok: Any, record: Mapping[str, Any], rng: random.Random, answer_format: str = "letter"
) -> dict | None:
    """Gold explanation + ``Answer: <gold>`` vs a rationale for a seeded-random wrong option.

    The wrong rationale is the gold explanation with the gold choice text and the wrong choice text
    swapped (case-insensitive, whole words, plural tolerant): "the hallway has a floor ... a carpet
    is not" becomes "the carpet has a floor ... a hallway is not", then ``Answer: <wrong>``
    (kind ``offline-swap``). When the explanation never names the gold text, a short template
    sentence built from the question concept and the wrong option is used (``offline-template``).
    A rejected side that differed only in the letter would teach answer-rationale consistency,
    not reasoning; with the swap the two sides share style and length, and differ in which
    entity the rationale's claims are about, so the preference is on the content of the reasoning.
    Returns None when no wrong option's text differs from the gold text.
    """
    gold = record["answer"]
    gold_text = record["choices"][LETTERS.index(gold)]
    wrong = [
        x for x, t in zip(LETTERS, record["choices"]) if x != gold and t.strip().lower() != gold_text.strip().lower()
    ]
    if not wrong:
        return None
    letter = rng.choice(wrong)
    wrong_text = record["choices"][LETTERS.index(letter)]
    swapped, n_gold = swap_mentions(record["explanation"], gold_text, wrong_text)
    kind = "offline-swap" if n_gold else "offline-template"
    rationale = swapped if n_gold else template_rationale(record["concept"], wrong_text)
    chosen = target_text(record["explanation"], gold, answer_text(record, gold, answer_format))
    rejected = target_text(rationale, letter, answer_text(record, letter, answer_format))
    return _pair(tok, record, chosen, rejected, (gold, letter), kind)


def build_offline_pairs(tok: Any, records: Iterable[Mapping[str, Any]], seed: int) -> list[dict]:
    """`offline_pair` for every record (one seeded generator per id); None results are left out."""
    return [p for r in records if (p := offline_pair(tok, r, _rng(seed, r["id"]))) is not None]


def samples_path(settings: PairSettings) -> Path:
    """Where on-policy samples are kept, beside the pairs file (``dpo_pairs_samples.jsonl``)."""
    return settings.pairs.with_name(settings.pairs.stem + "_samples.jsonl")


def sampling_provenance(settings: PairSettings) -> dict[str, Any]:
    """What on-policy samples depend on: the SFT adapter's weights and every sampling setting."""
    from helpers import provenance

    return {
        "sft_adapter": provenance.adapter_hash(settings.sft_dir),
        "model": settings.model,
        "precision": settings.precision,
        "quantize": settings.quantize,
        "seed": settings.seed,
        "samples_per_question": settings.samples_per_question,
        "temperature": settings.temperature,
        "max_new_tokens": settings.max_new_tokens,
        **({"greedy_sample": True} if settings.greedy_sample else {}),  # older samples' provenance stays as it was
    }


def sample_on_policy(
    model: Any, tok: Any, records: Sequence[Mapping[str, Any]], settings: PairSettings, samples_path: str | Path
) -> dict[str, list[str]]:
    """k = ``samples_per_question`` samples per question at ``temperature``, saved per batch; resumable. With
    ``greedy_sample`` each question's greedy answer (as evaluation decodes it) is added last, k + 1 in all.

    Questions already in ``samples_path`` are reused when its provenance (`sampling_provenance`) matches;
    samples of another adapter or other sampling settings are moved aside and sampled again. ``batch_size``
    counts generated sequences: ``batch_size // k`` questions are saved at a time (and decode together on CPU).
    """
    from tqdm.auto import tqdm

    from helpers import provenance

    path, k = Path(samples_path), settings.samples_per_question
    provenance.resume_or_restart(path, sampling_provenance(settings))
    done = {str(row["id"]): [str(x) for x in row["samples"]] for row in read_jsonl(path)}
    todo = list({r["id"]: r for r in records if r["id"] not in done}.values())
    if todo:
        prompts = [render_prompt(tok, r) for r in todo]
        greedy: dict[int, list[str]] = {i: [] for i in range(len(todo))}
        if settings.greedy_sample:  # one sequence a question: an eighth of the sampling below at k = 8
            for idx, gens in generation.generate_all(
                model,
                tok,
                prompts,
                batch_size=settings.batch_size,
                max_new_tokens=settings.max_new_tokens,
                temperature=0.0,
                num_return_sequences=1,
            ):
                greedy.update((i, [gs[0].text]) for i, gs in zip(idx, gens))
        batches = generation.generate_all(
            model,
            tok,
            prompts,
            batch_size=max(1, settings.batch_size // k),
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            num_return_sequences=k,
            seed=settings.seed,
        )
        with tqdm(total=len(todo), desc=f"sampling {k} per question", unit="q") as bar:
            for idx, gens in batches:
                rows = [{"id": todo[i]["id"], "samples": [g.text for g in gs] + greedy[i]} for i, gs in zip(idx, gens)]
                append_jsonl(path, rows)
                done.update((row["id"], row["samples"]) for row in rows)
                bar.update(len(rows))
    return {r["id"]: done[r["id"]] for r in records}


def sample_outcome(record: Mapping[str, Any], samples: Sequence[str]) -> str:
    """One question's samples: ``mixed``, ``all correct`` or ``all wrong`` (wrong or unparseable)."""
    correct = sum(extract_answer(s) == record["answer"] for s in samples)
    return "all wrong" if correct == 0 else "all correct" if correct == len(samples) else "mixed"


def pair_count(limit: int, correct: int, samples: int, weight_unsure: bool = False) -> int:
    """Pairs to build for a question: ``limit``, or with ``weight_unsure`` ``limit x 4p(1-p)`` (p = the share of
    right samples; at least 1), so the questions the model is unsure of (p near 1/2) get the most pairs.

    >>> [pair_count(4, c, 8, weight_unsure=True) for c in (1, 2, 4, 6, 7)]
    [2, 3, 4, 3, 2]
    """
    if not weight_unsure or samples == 0:
        return limit
    p = correct / samples
    return max(1, round(limit * 4 * p * (1 - p)))


def select_pairs(
    answers: Sequence[str | None],
    gold: str,
    rng: random.Random,
    limit: int = 1,
    rejected_first: str = "wrong",
    weight_unsure: bool = False,
) -> list[tuple[int, int]]:
    """Which samples `on_policy_pairs` pairs, from their parsed letters (None: no answer line): a list of (chosen,
    rejected) sample indices; empty if all agree. The rules are `on_policy_pairs`'s."""
    correct = [i for i, a in enumerate(answers) if a == gold]
    wrong = [i for i, a in enumerate(answers) if a is not None and a != gold]
    unparsed = [i for i, a in enumerate(answers) if a is None]
    wrong, unparsed = rng.sample(wrong, len(wrong)), rng.sample(unparsed, len(unparsed))
    rejected = unparsed + wrong if rejected_first == "failure" else wrong + unparsed
    if not correct or not rejected:
        return []
    correct = rng.sample(correct, len(correct))
    n = pair_count(limit, len(correct), len(answers), weight_unsure)
    return [
        (correct[i % len(correct)], rejected[i % len(rejected)])
        for i in range(min(n, max(len(correct), len(rejected))))
    ]


def on_policy_pairs(
    tok: Any,
    record: Mapping[str, Any],
    samples: Sequence[str],
    rng: random.Random,
    limit: int = 1,
    rejected_first: str = "wrong",
    weight_unsure: bool = False,
) -> list[dict]:
    """Up to ``limit`` pairs of a correct sample vs a rejected one; empty if all agree (`select_pairs` picks them).

    The rejected side's order (``rejected_first``): ``wrong``, wrong letters before unparseable samples (the
    contrast taught is the answer, not the format); ``failure``, unparseable samples (loops that ran out of tokens,
    answers without an answer line) first, so DPO is shown what a failure looks like. Pair ``i`` takes correct
    sample ``i mod c`` against rejected sample ``i mod r`` of the shuffled lists, so the ``min(n, max(c, r))``
    pairs are all different and use every sample about equally (``n``: `pair_count`). The chosen side is a random
    correct sample, not the shortest: picking the shortest would add a "shorter is better" preference on top of
    "correct is better", and DPO readily learns length.
    """
    answers = [extract_answer(s) for s in samples]
    return [
        _pair(
            tok,
            record,
            samples[c],
            samples[r],
            (record["answer"], answers[r]),
            "on-policy" if answers[r] is not None else "on-policy, failure rejected",
        )
        for c, r in select_pairs(answers, record["answer"], rng, limit, rejected_first, weight_unsure)
    ]


def gold_rejected(answers: Sequence[str | None], gold: str, rng: random.Random) -> int | None:
    """The sample `gold_vs_sample_pair` rejects: a failure (no answer line) if there is one, else a wrong letter;
    None if every sample is right."""
    rejected = [i for i, a in enumerate(answers) if a is None] or [i for i, a in enumerate(answers) if a != gold]
    return rng.choice(rejected) if rejected else None


def gold_vs_sample_pair(
    tok: Any, record: Mapping[str, Any], samples: Sequence[str], rng: random.Random, answer_format: str = "letter"
) -> dict | None:
    """For a question the model got wrong every time: the gold explanation (the SFT target) as chosen against one
    of the model's own wrong samples (`gold_rejected`: a failure first, as `on_policy_pairs` with
    ``rejected_first='failure'``)."""
    answers = [extract_answer(s) for s in samples]
    i = gold_rejected(answers, record["answer"], rng)
    if i is None:
        return None
    gold = target_text(record["explanation"], record["answer"], answer_text(record, record["answer"], answer_format))
    return _pair(tok, record, gold, samples[i], (record["answer"], answers[i]), "gold vs own wrong sample")


def _tokens(tok: Any, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


def check_pair(
    tok: Any, record: Mapping[str, Any], pair: Mapping[str, Any], max_length: int | None = None
) -> str | None:
    """The reason a pair is unusable, or None if it is fine."""
    if pair["prompt"] != render_prompt(tok, record):
        return "prompt differs from render_prompt"
    if pair["chosen"] == pair["rejected"]:
        return "chosen equals rejected"
    if not (pair["chosen"].endswith(tok.eos_token) and pair["rejected"].endswith(tok.eos_token)):
        return "a side does not end with the end-of-turn token"
    if extract_answer(pair["chosen"]) != record["answer"]:
        return "chosen does not parse to gold"
    if extract_answer(pair["rejected"]) == record["answer"]:
        return "rejected parses to gold"
    if (
        max_length
        and _tokens(tok, pair["prompt"]) + max(_tokens(tok, pair["chosen"]), _tokens(tok, pair["rejected"]))
        > max_length
    ):
        return f"prompt + longest side over max_length {max_length}"
    return None


@dataclass
class PairReport:
    """What was built, by kind and on-policy outcome, and what was dropped, by reason."""

    strategy: str = "offline"
    questions: int = 0
    kinds: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> first id

    def drop(self, reason: str, record_id: str) -> None:
        self.dropped[reason] += 1
        self.examples.setdefault(reason, record_id)

    @property
    def kept(self) -> int:
        return sum(self.kinds.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "questions": self.questions,
            "kept": self.kept,
            "kinds": dict(self.kinds),
            "outcomes": dict(self.outcomes),
            "dropped": dict(self.dropped),
            "examples": self.examples,
        }

    def __str__(self) -> str:
        lines = [f"{self.strategy} pairs: {self.kept} kept of {self.questions} questions"]
        lines += [f"  {n:>6}  {kind}" for kind, n in self.kinds.most_common()]
        if self.outcomes:
            lines.append("  on-policy samples per question: " + ", ".join(f"{o} {self.outcomes[o]}" for o in OUTCOMES))
        lines += [f"  dropped {n:>5}  {r} (first: {self.examples[r]})" for r, n in self.dropped.most_common()]
        return "\n".join(lines)


def build_pairs(
    settings: PairSettings, tok: Any, records: Iterable[Mapping[str, Any]], model: Any = None
) -> tuple[list[dict], PairReport]:
    """Pairs for ``records`` by ``settings.strategy`` (on-policy samples from ``model``, the SFT model), each
    passed through `check_pair` with ``settings.max_length``."""
    records = list(records)
    report = PairReport(strategy=settings.strategy, questions=len(records))
    samples: dict[str, list[str]] = {}
    if settings.strategy == "on_policy":
        if model is None:
            raise ValueError(
                "on-policy pairs are sampled from the SFT model: pass model= (helpers.steps.run_pairs "
                "loads it), or use strategy='offline'"
            )
        samples = sample_on_policy(model, tok, records, settings, samples_path(settings))
    pairs = []
    for rec in records:
        rng = _rng(settings.seed, rec["id"])
        candidates: Sequence[dict | None]
        if settings.strategy == "offline":
            candidates = [offline_pair(tok, rec, rng, settings.answer_format)]
        else:
            outcome = sample_outcome(rec, samples[rec["id"]])
            report.outcomes[outcome] += 1
            candidates = on_policy_pairs(
                tok,
                rec,
                samples[rec["id"]],
                rng,
                settings.pairs_per_question,
                rejected_first=settings.rejected_first,
                weight_unsure=settings.weight_unsure,
            )
            agree = settings.when_all_agree
            if not candidates and (agree == "skip" or (agree == "gold" and outcome == "all correct")):
                report.drop(f"all samples agree (when_all_agree={agree!r})", rec["id"])
                continue
            if not candidates and agree == "gold":
                candidates = [gold_vs_sample_pair(tok, rec, samples[rec["id"]], rng, settings.answer_format)]
            candidates = candidates or [offline_pair(tok, rec, rng, settings.answer_format)]
        for pair in candidates:
            reason = (
                "no wrong option differs from the gold text"
                if pair is None
                else check_pair(tok, rec, pair, settings.max_length)
            )
            if reason:
                report.drop(reason, rec["id"])
                continue
            report.kinds[pair["kind"]] += 1
            pairs.append(pair)
    return pairs, report


def write_pairs(pairs: Sequence[Mapping[str, Any]], path: str | Path, report: PairReport | None = None) -> Path:
    """Write pairs to JSONL atomically (a tmp file, then rename); ``report`` goes to ``<stem>_summary.json``."""
    path = Path(path)
    missing = [k for k in PAIR_KEYS if pairs and k not in pairs[0]]
    if not pairs or missing:
        raise ValueError(
            f"refusing to write {path}: "
            + (f"pairs lack keys {missing}" if pairs else "no pairs")
            + "; build them with build_pairs"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(path, ({k: p[k] for k in PAIR_KEYS} for p in pairs))
    if report is not None:
        path.with_name(path.stem + "_summary.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def read_pairs(path: str | Path) -> Any:
    """Pairs file -> `datasets.Dataset` (`helpers.jsonl.read_jsonl`: a cut-off last line is dropped, any other
    broken line is an error naming it)."""
    from datasets import Dataset

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pairs file at {path}: run notebook 02_pairs (or set pairs_file)")
    rows = read_jsonl(path, repair=False)
    for lineno, row in enumerate(rows, 1):
        missing = [k for k in PAIR_KEYS if k not in row]
        if missing:
            raise ValueError(f"{path}: pair {lineno} lacks keys {missing}; rebuild the file with notebook 02_pairs")
    if not rows:
        raise ValueError(f"{path} holds no pairs: rebuild it with notebook 02_pairs")
    return Dataset.from_list([{k: row[k] for k in PAIR_KEYS} for row in rows])


def pair_lengths(tok: Any, pairs: Iterable[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Token counts of prompt, chosen and rejected per pair (for histograms)."""
    out: dict[str, list[int]] = {"prompt": [], "chosen": [], "rejected": []}
    for p in pairs:
        for key, counts in out.items():
            counts.append(_tokens(tok, p[key]))
    return out

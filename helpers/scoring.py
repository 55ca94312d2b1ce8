"""Log-likelihood scoring of (context, continuation) pairs as lm-evaluation-harness does it, and the texts scored.

One scorer, `score_continuations`, serves the ``cloze``, ``letter`` and ``letter-cyclic`` modes:

* a continuation is tokenized in context: ``enc(context + continuation)[len(enc(context)):]`` (a context's trailing
  whitespace moves to the continuation first), and no BOS is added (lm-eval's default for causal LMs);
* its score is the summed log-probability of its tokens given the context;
* the model sees ``context + continuation[:-1]``; requests with the same such row (the five one-token letters after
  one context) share it, so a letter-mode question costs one row and a cloze question five.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from helpers.answers import LETTERS


# ---------------------------------------------------------------- the texts scored
def letter_prompt(record: Mapping[str, Any], choices: Sequence[str] | None = None) -> str:
    """lm-evaluation-harness ``commonsense_qa`` text: question, ``A. ...`` to ``E. ...``, ``Answer:``."""
    lines = [f"Question: {record['question'].strip()}"]
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, choices or record["choices"])]
    return "\n".join(lines + ["Answer:"])


def cloze_context(record: Mapping[str, Any]) -> str:
    """The cloze context: ``Question: ...\\nAnswer:``; each choice's text follows it after a space."""
    return f"Question: {record['question'].strip()}\nAnswer:"


def rotations(choices: Sequence[str]) -> list[list[str]]:
    """The cyclic rotations of the choices: in rotation ``r``, position ``p`` shows original choice ``(p + r) % n``."""
    n = len(choices)
    return [[choices[(p + r) % n] for p in range(n)] for r in range(n)]


def unrotate(scores_by_rotation: Sequence[Sequence[float]]) -> list[float]:
    """Per original choice, the mean of the scores its letter got over the rotations of `rotations`."""
    n = len(scores_by_rotation)
    return [sum(scores_by_rotation[r][(c - r) % n] for r in range(n)) / n for c in range(n)]


def argmax_letter(scores: Sequence[float]) -> str:
    """The letter of the highest score (the first on a tie, as numpy's argmax in lm-eval)."""
    return LETTERS[max(range(len(scores)), key=scores.__getitem__)]


# ---------------------------------------------------------------- the scorer
def _encode(tokenizer: Any, texts: list[str], add_bos: bool) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=add_bos)["input_ids"]]


def encode_pairs(
    tokenizer: Any, requests: Sequence[tuple[str, str]], add_bos: bool = False
) -> list[tuple[list[int], list[int]]]:
    """(context ids, continuation ids) per request, as lm-eval's ``_encode_pair``."""
    moved = []
    for context, cont in requests:
        spaces = len(context) - len(context.rstrip())
        moved.append((context[: len(context) - spaces], context[len(context) - spaces :] + cont))
    ctx = _encode(tokenizer, [c for c, _ in moved], add_bos)
    whole = _encode(tokenizer, [c + x for c, x in moved], add_bos)
    pairs = [(c, w[len(c) :]) for c, w in zip(ctx, whole)]
    for (context, cont), (_, ids) in zip(moved, pairs):
        if not ids:
            raise ValueError(f"continuation {cont!r} encodes to no tokens after {context[-40:]!r}")
    return pairs


def _device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if device is not None else next(model.parameters()).device


@torch.inference_mode()
def score_continuations(
    model: Any, tokenizer: Any, requests: Sequence[tuple[str, str]], batch_size: int = 64, add_bos: bool = False
) -> list[float]:
    """Summed log-probability of each continuation given its context; rows of ``batch_size``, longest first.

    >>> score_continuations(model, tok, [("Question: ...\\nAnswer:", " sea"), ...])  # doctest: +SKIP
    """
    model.eval()
    pairs = encode_pairs(tokenizer, requests, add_bos)
    rows: dict[tuple[int, ...], int] = {}  # distinct model inputs -> row index
    targets = [(rows.setdefault(tuple(ctx + cont[:-1]), len(rows)), cont) for ctx, cont in pairs]
    need = [0] * len(rows)  # logits each row must keep: its longest continuation
    for row, cont in targets:
        need[row] = max(need[row], len(cont))
    seqs = list(rows)
    logps: dict[int, torch.Tensor] = {}  # row -> log-probs of its last need[row] positions
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dev = _device(model)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width, keep = max(len(seqs[i]) for i in chunk), max(need[i] for i in chunk)
        ids = torch.tensor([[pad] * (width - len(seqs[i])) + list(seqs[i]) for i in chunk])  # left padding
        mask = torch.tensor([[0] * (width - len(seqs[i])) + [1] * len(seqs[i]) for i in chunk])
        out = model(
            input_ids=ids.to(dev),
            attention_mask=mask.to(dev),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(dev),
            logits_to_keep=keep,
        )
        logp = out.logits[:, -keep:].float().log_softmax(-1).cpu()
        for j, i in enumerate(chunk):
            logps[i] = logp[j, keep - need[i] :]
    # continuation token t of a row's target is predicted at position t - len(cont) from the row's end
    return [
        sum(float(logps[row][need[row] - len(cont) + t, tok]) for t, tok in enumerate(cont)) for row, cont in targets
    ]


def letter_scores(model: Any, tokenizer: Any, contexts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
    """Per context, the summed log-probability of " A" ... " E" after it."""
    requests = [(c, " " + letter) for c in contexts for letter in LETTERS]
    flat = score_continuations(model, tokenizer, requests, batch_size)
    return [flat[i : i + len(LETTERS)] for i in range(0, len(flat), len(LETTERS))]


def cloze_scores(
    model: Any, tokenizer: Any, records: Sequence[Mapping[str, Any]], batch_size: int = 64
) -> list[dict[str, list[float]]]:
    """Per question, ``{"acc": summed log-probs, "acc_norm": log-probs / characters}`` of its choices' texts.

    ``acc_norm`` divides by the length of the choice's text in characters, as lm-eval's ``acc_norm``
    (``len(choice)``, without the leading space).
    """
    requests = [(cloze_context(r), " " + choice) for r in records for choice in r["choices"]]
    flat = score_continuations(model, tokenizer, requests, batch_size)
    out = []
    for q, r in enumerate(records):
        sums = flat[q * len(LETTERS) : (q + 1) * len(LETTERS)]
        out.append({"acc_norm": [s / max(1, len(c)) for s, c in zip(sums, r["choices"])], "acc": sums})
    return out

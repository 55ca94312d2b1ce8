"""Tests for helpers.scoring: lm-eval tokenization, the batched scorer against a one-at-a-time reference, rotations."""

from __future__ import annotations

import pytest
import torch

from helpers.answers import LETTERS
from helpers.scoring import (
    argmax_letter,
    cloze_context,
    encode_pairs,
    letter_prompt,
    rotations,
    score_continuations,
    unrotate,
)

CHOICES = ["sea", "tree", "car", "sky", "shoe"]


def test_rotation_r_shows_choice_p_plus_r_at_position_p():
    rots = rotations(CHOICES)
    assert rots[0] == CHOICES and rots[1] == ["tree", "car", "sky", "shoe", "sea"]
    assert all(rots[r][p] == CHOICES[(p + r) % 5] for r in range(5) for p in range(5))


def test_unrotate_cancels_a_position_prior_and_keeps_content():
    prior = [3.0, 0.0, 0.0, 0.0, 0.0]  # " A" always wins by 3 nats, whatever it labels
    assert unrotate([prior] * 5) == pytest.approx([0.6] * 5)
    # the content "car" (original C) gets +1 wherever it is shown, on top of the prior
    by_rot = [[p + (1.0 if rot[i] == "car" else 0.0) for i, p in enumerate(prior)] for rot in rotations(CHOICES)]
    assert argmax_letter(by_rot[1]) == "A"  # one rotation alone follows the prior
    assert argmax_letter(unrotate(by_rot)) == "C"


def test_argmax_takes_the_first_of_ties():
    assert argmax_letter([0.0, 1.0, 1.0, -1.0, 0.5]) == "B"


class WordTok:
    """Splits on spaces, keeping each space with the word after it: ' sea' is one token, as in BPE."""

    pad_token_id = 0

    def __init__(self):
        self.vocab: dict[str, int] = {}

    def __call__(self, texts, add_special_tokens=True):
        import re

        return {
            "input_ids": [
                [self.vocab.setdefault(w, len(self.vocab) + 1) for w in re.findall(r"\s*\S+|\s+", t)] for t in texts
            ]
        }


def test_encode_pairs_follows_lm_eval():
    tok = WordTok()
    ((ctx, cont),) = encode_pairs(tok, [("Answer:", " deep sea")])
    assert len(ctx) == 1 and len(cont) == 2
    ((ctx2, cont2),) = encode_pairs(tok, [("Answer: ", "deep sea")])  # trailing space moves to the continuation
    assert (ctx2, cont2) == (ctx, cont)
    with pytest.raises(ValueError, match="no tokens"):
        encode_pairs(tok, [("Answer:", "")])


class TinyLM(torch.nn.Module):
    """A causal LM with attention over the unmasked past: padding and positions must be right to match."""

    def __init__(self, vocab: int = 128):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.pos, self.head = (
            torch.nn.Embedding(vocab, 16),
            torch.nn.Embedding(256, 16),
            torch.nn.Linear(16, vocab),
        )

    def forward(self, input_ids, attention_mask, position_ids=None, logits_to_keep=0):
        from types import SimpleNamespace

        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        h = self.emb(input_ids) + self.pos(position_ids)
        n = input_ids.shape[1]
        allowed = torch.tril(torch.ones(n, n, dtype=torch.bool)) & attention_mask.bool()[:, None, :]
        att = (h @ h.transpose(1, 2) / 4).masked_fill(~allowed, -1e9).softmax(-1)
        logits = self.head(torch.tanh(att @ h))
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


class CharTok:
    pad_token_id = 0

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) % 128 or 1 for c in t] for t in texts]}


@torch.no_grad()
def one_at_a_time(model, tok, context: str, continuation: str) -> float:
    """The reference: one unpadded sequence, every logit, summed over the continuation's tokens."""
    ctx = tok([context], add_special_tokens=False)["input_ids"][0]
    ids = tok([context + continuation], add_special_tokens=False)["input_ids"][0]
    x = torch.tensor([ids])
    logp = model(input_ids=x, attention_mask=torch.ones_like(x)).logits.float().log_softmax(-1)[0]
    return sum(float(logp[p - 1, ids[p]]) for p in range(len(ctx), len(ids)))


QUESTIONS = [
    {"question": "Where do fish live?", "choices": CHOICES},
    {
        "question": "What do you use to cut paper in an office?",
        "choices": ["scissors", "a very large hammer", "glue", "pen", "stapler machine"],
    },
    {"question": "Bright?", "choices": ["sun", "moon", "lamp", "dark cave", "star"]},
]


def requests() -> list[tuple[str, str]]:
    cloze = [(cloze_context(q), " " + c) for q in QUESTIONS for c in q["choices"]]
    letter = [(letter_prompt(q), " " + x) for q in QUESTIONS for x in LETTERS]
    return cloze + letter


def test_batched_scorer_equals_one_at_a_time_on_a_toy_model():
    model, tok = TinyLM(), CharTok()
    reqs = requests()
    got = score_continuations(model, tok, reqs, batch_size=4)  # several chunks, left padding within each
    assert got == pytest.approx([one_at_a_time(model, tok, c, x) for c, x in reqs], abs=1e-4)


@pytest.mark.slow
def test_batched_scorer_equals_one_at_a_time_on_smollm2(smol_tokenizer, torch_threads):
    from helpers.models import load_model

    model = load_model("smollm2-135m", precision="fp32", quantize=False)
    reqs = requests()
    got = score_continuations(model, smol_tokenizer, reqs, batch_size=8)
    want = [one_at_a_time(model, smol_tokenizer, c, x) for c, x in reqs]
    assert got == pytest.approx(want, abs=2e-3)
    assert len(encode_pairs(smol_tokenizer, [reqs[-1]])[0][1]) == 1  # " E" is one token: letters share a row

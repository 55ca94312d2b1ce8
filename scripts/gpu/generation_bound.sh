#!/usr/bin/env bash
# Generation at Llama-3.2-1B shape against the card's bound (benchmarks/generation_1b.py), the rows of
# benchmarks/NOTES.md "Generation against the bound". Needs gpu-bundle/1 (`bash scripts/gpu/bundle.sh`); on the
# GPU machine, from the repository root:  . scripts/gpu/setup.sh && bash scripts/gpu/generation_bound.sh
set -uo pipefail  # a failed or cut-off row set does not stop the next; each row is saved as it ends
L="$OUT/generation-bound.log"
B="--tokenizer /tmp/g/tokenizer --data /tmp/g/ecqa --work /tmp/gen1b --out $OUT"
python3 benchmarks/generation_1b.py --precision fp16 --batches 32 256 \
  --paths 4bit-generate merged-generate merged-continuous merged-continuous-graphs $B 2>&1 | tee -a "$L" | grep -v "Warning\|warn(" | tail -20
python3 benchmarks/generation_1b.py --precision bf16 --batches 256 \
  --paths 4bit-generate merged-generate merged-continuous merged-continuous-graphs $B 2>&1 | tee -a "$L" | grep -v "Warning\|warn(" | tail -12
python3 benchmarks/generation_1b.py --precision fp16 --batches 256 --stages cot-eval \
  --paths merged-compiled $B 2>&1 | tee -a "$L" | grep -v "Warning\|warn(" | tail -3

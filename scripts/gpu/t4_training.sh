#!/usr/bin/env bash
# What each of SFT's memory savers costs in time on a T4's memory: Llama-3.2-1B shape, 4-bit, fp16 (a T4 has no
# bf16), this process capped at 15 GiB (benchmarks/train_speed.py --memory-cap-gib). Needs gpu-bundle/1
# (`bash scripts/gpu/bundle.sh`); on the GPU machine:  . scripts/gpu/setup.sh && bash scripts/gpu/t4_training.sh
set -euo pipefail
python3 benchmarks/train_speed.py --stages sft --precision fp16 --memory-cap-gib 15 --steps ${STEPS:-16} \
  --configs default gc-on-gpu nogc nogc-noliger default --tag t4-cap-sft \
  --tokenizer /tmp/g/tokenizer --data /tmp/g/ecqa --work /tmp/bench --out "$OUT" 2>&1 | tee "$OUT/t4-training.log" \
  | grep -v "Warning\|warn(\|it/s\]" | tail -8

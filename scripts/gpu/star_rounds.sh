#!/usr/bin/env bash
# Session 14's recipe levers on one GPU (assets/recipe/NOTES.md, "STaR, pairs from every question, a second
# round"), in three back-to-back calls while the machine stays warm (/tmp keeps the runs between them):
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh 1  # L2 retrained, then sampled: every train question
#                                                              # 4x (STaR, D9) and 1,000 questions 8x (D7)
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh 2  # S1 (STaR), D7 and D9 at once
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh 3  # R2: a second on-policy round from D7
# Stage 1 samples for the phases named in SAMPLE (default "star pairs"); stage 2 runs the levers named in STAR
# (default S1) and DPO (default "D7 D9"). The shortest way to stage 3: SAMPLE=pairs for stage 1, STAR= DPO=D7
# for stage 2.
# Rows, logs, per-question held-out records and training summaries go to $OUT.
set -uo pipefail
export RECIPE_ROOT=/tmp/recipe
nvidia-cuda-mps-control -d 2>/dev/null || true  # several processes share the GPU
R="python3 scripts/gpu/recipe.py"
case "$1" in
1)
  RECIPE_SECONDS=560 $R sft L2 &
  sft=$!
  until [ -f $RECIPE_ROOT/L2/outputs/sft/train_summary.json ] || ! kill -0 $sft 2>/dev/null; do sleep 5; done
  SAMPLE=${SAMPLE-star pairs}  # while L2's held-out evaluation runs:
  [[ " $SAMPLE " == *" star "* ]] && (timeout 330 $R star --sft L2 >"$OUT/star-sampling.log" 2>&1) &
  [[ " $SAMPLE " == *" pairs "* ]] && (timeout 330 $R dpo --sft L2 >"$OUT/pairs-sampling.log" 2>&1) &
  wait
  ;;
2)
  STAR=${STAR-S1} DPO=${DPO-D7 D9}
  [ -n "$STAR" ] && RECIPE_SECONDS=560 $R star --sft L2 $STAR &
  [ -n "$DPO" ] && RECIPE_SECONDS=560 $R dpo --sft L2 --parallel 2 $DPO &
  wait
  ;;
3) RECIPE_SECONDS=560 $R dpo --sft L2-D7 same ;;
esac
cd $RECIPE_ROOT && tar czf "$OUT/extras.tgz" --ignore-failed-read \
  ./*/data/*_summary.json ./*/ecqa/star_counts.json ./*/eval-holdout/*.jsonl \
  ./*/outputs/*/metrics.json ./*/outputs/*/train_summary.json 2>/dev/null
tail -n 3 "$OUT"/*.log 2>/dev/null
cat "$OUT"/recipe-*-rows.jsonl 2>/dev/null
true

#!/usr/bin/env bash
# The recipe screens of 2026-11-28 on one GPU (assets/recipe/NOTES.md: "STaR, and pairs from every question" and "a
# second on-policy round"), in back-to-back calls of the device runner while the machine stays warm (/tmp keeps the
# runs between them). It needs what `bash scripts/gpu/bundle.sh` builds: gpu-bundle/1 (wheels, ECQA data) and
# gpu-bundle/2 and /3 (SmolLM2's GGUF in two parts), brought to the GPU machine in calls in a row, each sourcing
# `. scripts/gpu/setup.sh` from the repository root (it lays out what each call brings). Then, one stage a call:
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh sample        # the SFT default retrained, then sampled:
#       # every train question 4x (for STaR and DPO on every question), 1,000 questions 8x (for DPO on 4 pairs each)
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh train         # STaR and both DPO levers at once
#   . scripts/gpu/setup.sh; bash scripts/gpu/star_rounds.sh iterate       # DPO again from the 4-pairs DPO model,
#                                                                         # on pairs sampled from it
# `sample` samples for the phases named in SAMPLE (default "star pairs"); `train` runs the levers named in STAR
# (default star-r64-all-linear) and DPO (default the two DPO levers below). The shortest way to `iterate`:
# SAMPLE=pairs for `sample`, then STAR= DPO=dpo-lr5e-5-beta0.1-nll0.2-4pairs for `train`. The published rows'
# commands name the stages 1, 2 and 3 and the levers by their short names (scripts/gpu/recipe.py's PUBLISHED_NAMES):
# both are accepted.
# Rows, logs, per-question held-out records and training summaries go to $OUT.
set -uo pipefail
case ${1:-} in
1 | sample | 2 | train | 3 | iterate) ;;
*) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2 && exit 1 ;;
esac
: "${ECQA_DATA:?run . scripts/gpu/setup.sh first}" "${OUT:?set OUT to the folder that comes back}"
export RECIPE_ROOT=/tmp/recipe
nvidia-cuda-mps-control -d 2>/dev/null || true  # several processes share the GPU
R="python3 scripts/gpu/recipe.py"
SFT=sft-r64-all-linear                         # the SFT default: LoRA r64 on every linear layer
FOUR=dpo-lr5e-5-beta0.1-nll0.2-4pairs          # DPO on up to 4 pairs from each of 1,000 questions
EVERY=dpo-lr5e-5-beta0.1-nll0.2-all-questions  # the same on one pair from each train question
case ${1:-} in
1 | sample)
  RECIPE_SECONDS=560 $R sft $SFT &
  sft=$!
  until [ -f $RECIPE_ROOT/$SFT/outputs/sft/train_summary.json ] || ! kill -0 $sft 2>/dev/null; do sleep 5; done
  SAMPLE=${SAMPLE-star pairs}  # while the SFT's held-out evaluation runs:
  [[ " $SAMPLE " == *" star "* ]] && (timeout 330 $R star --sft $SFT >"$OUT/star-sampling.log" 2>&1) &
  [[ " $SAMPLE " == *" pairs "* ]] && (timeout 330 $R dpo --sft $SFT >"$OUT/pairs-sampling.log" 2>&1) &
  wait
  ;;
2 | train)
  STAR=${STAR-star-r64-all-linear} DPO=${DPO-$FOUR $EVERY}
  [ -n "$STAR" ] && RECIPE_SECONDS=560 $R star --sft $SFT $STAR &
  [ -n "$DPO" ] && RECIPE_SECONDS=560 $R dpo --sft $SFT --parallel 2 $DPO &
  wait
  ;;
3 | iterate) RECIPE_SECONDS=560 $R dpo --sft "${SFT}__${FOUR}" same ;;  # __: recipe.py's THEN
esac
cd $RECIPE_ROOT && tar czf "$OUT/extras.tgz" --ignore-failed-read \
  ./*/data/*_summary.json ./*/ecqa/star_counts.json ./*/eval-holdout/*.jsonl \
  ./*/outputs/*/metrics.json ./*/outputs/*/train_summary.json 2>/dev/null
tail -n 3 "$OUT"/*.log 2>/dev/null
cat "$OUT"/recipe-*-rows.jsonl 2>/dev/null
true

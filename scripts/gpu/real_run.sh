#!/usr/bin/env bash
# The published GPU run (after SFT, which scripts/gpu/sft_round.sh made): pairs by both strategies,
# DPO from each, evaluation of every variant. Every step is `python -m helpers STEP` on a committed
# settings file in assets/real-run/settings. It needs what `bash scripts/gpu/bundle.sh` builds (gpu-bundle/1, /2 and
# /3, as for sft_round.sh) and the chosen SFT adapter: sft_round.sh's $OUT/NAME/adapter.tgz, put on this machine as
# gpu-bundle/adapter/sft-adapter.tgz after bundle.sh ran (bundle.sh clears gpu-bundle/). Bring those folders in calls
# in a row, each sourcing `. scripts/gpu/setup.sh` from the repository root (it lays them out beside the ECQA data);
# then, one phase a call:
#   bash scripts/gpu/real_run.sh pairs|dpo-offline|dpo-on-policy|eval
set -euo pipefail
S=assets/real-run/settings
phase=$1
mkdir -p "$OUT" /tmp/art/outputs
quiet() { grep -v "it/s\]\|examples/s\]\|q/s\]" | tail -"${1:-12}"; }
timed() { local start=$SECONDS; "$@"; echo "WALL $* : $((SECONDS - start)) s" | tee -a /tmp/art/times.txt; }
case $phase in
  pairs)
    [ -d /tmp/art/outputs/sft ] || tar xzf "$(dirname "${ECQA_DATA:?run . scripts/gpu/setup.sh first}")/sft-adapter.tgz" \
      -C /tmp/art/outputs
    timed python3 -m helpers pairs $S/pairs-offline.json 2>&1 | quiet
    timed python3 -m helpers pairs $S/pairs-on-policy.json 2>&1 | quiet
    tar czf "$OUT/data.tgz" -C /tmp/art data ;;
  dpo-offline|dpo-on-policy)
    timed python3 -m helpers dpo $S/$phase.json 2>&1 | quiet 4
    mkdir -p "$OUT/$phase"
    cp /tmp/art/outputs/$phase/{metrics.csv,train_summary.json} "$OUT/$phase/" ;;
  eval)
    timed python3 -m helpers eval $S/eval.json 2>&1 | quiet 6
    tar czf "$OUT/eval.tgz" -C /tmp/art eval
    cp /tmp/art/eval/{results.csv,comparisons.csv} "$OUT/" ;;
esac
cp /tmp/art/times.txt "$OUT/" 2>/dev/null || true

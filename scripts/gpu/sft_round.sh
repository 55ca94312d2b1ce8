#!/usr/bin/env bash
# One SFT candidate on the GPU with the committed settings, then CoT evaluation on the held-out
# train slice (never validation). It needs what `bash scripts/gpu/bundle.sh` builds: gpu-bundle/1 (wheels, the ECQA
# data the settings files read) and gpu-bundle/2 and /3 (SmolLM2's GGUF in two parts), brought to the GPU machine in
# calls in a row, each sourcing `. scripts/gpu/setup.sh` from the repository root. Then:
#   bash scripts/gpu/sft_round.sh NAME LEARNING_RATE PRECISION [EXTRA --FIELD VALUE ...]
# The adapter comes back as $OUT/NAME/adapter.tgz, which scripts/gpu/real_run.sh starts from.
set -euo pipefail
name=$1 lr=$2 precision=$3; shift 3
S=assets/real-run/settings
root=/tmp/art/$name
python3 -m helpers sft $S/sft.json --root $root --learning_rate $lr --precision $precision "$@" 2>&1 \
  | grep -v "it/s\]\|examples/s\]" | tee /tmp/art-$name-sft.log | tail -4
python3 -m helpers eval $S/eval-holdout.json --root $root --precision $precision 2>&1 | grep -v "q/s\]" | tail -3
mkdir -p "$OUT/$name"
cp $root/outputs/sft/{metrics.csv,settings.json,train_summary.json} "$OUT/$name/"
cp $root/eval-holdout/results.csv "$OUT/$name/holdout-results.csv"
tar czf "$OUT/$name/adapter.tgz" --exclude 'checkpoint-*' -C $root/outputs sft
python3 - "$root" "$name" <<'PY'
import json, sys, pandas as pd
root, name = sys.argv[1:]
hist = json.load(open(f"{root}/outputs/sft/metrics.json"))
losses = [h["loss"] for h in hist if "loss" in h]
end = [h for h in hist if "train_runtime" in h][-1]
summ = json.load(open(f"{root}/outputs/sft/train_summary.json"))
res = pd.read_csv(f"{root}/eval-holdout/results.csv").iloc[0]
print(f"ROW {name}: first_loss={losses[0]:.3f} last_loss={losses[-1]:.3f} steps={hist[-1].get('step')} "
      f"runtime_s={end['train_runtime']:.0f} tokens={end.get('num_input_tokens_seen')} "
      f"tok_per_s={end.get('num_input_tokens_seen', 0) / end['train_runtime']:.0f} "
      f"peak_gib={summ['peak_gib']:.2f} device={summ['device']} "
      f"holdout_acc={res['accuracy']:.3f} parse_fail={res['parse_fail_rate']:.3f} mean_tokens={res['mean_new_tokens']:.0f}")
PY

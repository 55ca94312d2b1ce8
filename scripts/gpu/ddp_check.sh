#!/usr/bin/env bash
# DDP check on a 2-GPU machine: the same SFT (SmolLM2-135M, 4-bit QLoRA, bf16) as one process and as two
# (`accelerate launch --multi_gpu --num_processes 2`), then the 2-GPU adapter evaluated in CoT mode on 200
# validation questions sharded over two processes. Prints one row per run and the merged record count.
# It needs what `bash scripts/gpu/bundle.sh` builds: gpu-bundle/1 (wheels, ECQA data) and gpu-bundle/2 and /3
# (SmolLM2's GGUF in two parts), brought to the 2-GPU machine (device kind nvidia-h100-x2) in calls in a row, each
# sourcing `. scripts/gpu/setup.sh` from the repository root. Then: bash scripts/gpu/ddp_check.sh
#
# Both runs use per-device batch 16 and the same 60 steps, so the 2-GPU run sees twice the sequences per
# step (effective batch 32 vs 16) and its tokens/s should be about twice the 1-GPU figure: this measures how
# throughput scales, not a like-for-like training run (losses are comparable only roughly).
# train_sample_size 2048 keeps both runs inside one epoch (60 x 32 = 1,920 sequences).
# Sizes can be shrunk for a smoke run on CPU, e.g. STEPS=2 BATCH=2 TRAIN_N=64 EVAL_N=6 MAX_NEW=16 EVAL_PRECISION=fp32
# OUT=/tmp/o ECQA_DATA=../shared/data/ecqa PY=.venv/bin/python bash scripts/gpu/ddp_check.sh
set -euo pipefail
: "${OUT:?set OUT to the folder that comes back}" "${ECQA_DATA:?run . scripts/gpu/setup.sh first}"
PY=${PY:-$(command -v python || command -v python3)}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 OMP_NUM_THREADS=4
W=/tmp/ddp_check
rm -rf "$W" && mkdir -p "$W" "$OUT"
LOG=$OUT/ddp_check.log
STEPS=${STEPS:-60} BATCH=${BATCH:-16} TRAIN_N=${TRAIN_N:-2048} EVAL_N=${EVAL_N:-200} MAX_NEW=${MAX_NEW:-192}
EVAL_PRECISION=${EVAL_PRECISION:-bf16}  # bf16 base with the adapter merged, as the published evaluation
LAUNCH2=("$PY" -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --dynamo_backend no)

cat > "$W/sft.json" <<EOF
{"model": "smollm2-135m", "data_source": "$ECQA_DATA", "root": "$W/one", "train_sample_size": $TRAIN_N,
 "max_steps": $STEPS, "per_device_train_batch_size": $BATCH, "gradient_accumulation_steps": 1, "logging_steps": 5,
 "save_steps": 1000, "warmup_ratio": 0.03, "report_to": "none"}
EOF
cat > "$W/eval.json" <<EOF
{"model": "smollm2-135m", "data_source": "$ECQA_DATA", "root": "$W/two", "precision": "$EVAL_PRECISION", "quantize": false,
 "variants": ["sft"], "modes": ["cot"], "sample_size": $EVAL_N, "max_new_tokens": $MAX_NEW, "batch_size": 64}
EOF

# step NAME COMMAND...: run it, drop progress bars from the log, record its wall time in $W/NAME.s
step() {
  local name=$1 start=$SECONDS; shift
  echo "== $name: $*" | tee -a "$LOG"
  "$@" 2>&1 | tr '\r' '\n' | awk '!/(it\/s|s\/it|examples\/s|q\/s|s\/q)\]/ && NF' | tee -a "$LOG" | tail -n 3
  echo $((SECONDS - start)) > "$W/$name.s"
  echo "== $name: $((SECONDS - start)) s" | tee -a "$LOG"
}

{ nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee -a "$LOG"
"$PY" - <<'PY' | tee -a "$LOG"
import importlib.metadata as md, torch
print("gpus", torch.cuda.device_count())
for n in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes"):
    try:
        print(" ", n, md.version(n))
    except md.PackageNotFoundError:
        print(" ", n, "missing")
PY
# the 1-GPU run also converts the embedded model into the cache once, before any timing of the 2-GPU run
# one process sees one GPU: with two visible, Trainer would use nn.DataParallel, which TRL refuses
step sft1 env CUDA_VISIBLE_DEVICES=0 "$PY" -m helpers sft "$W/sft.json"
step sft2 "${LAUNCH2[@]}" -m helpers sft "$W/sft.json" --root "$W/two"
step eval2 "${LAUNCH2[@]}" -m helpers eval "$W/eval.json"

cp "$W/one/outputs/sft/metrics.json" "$OUT/one-gpu-metrics.json"
cp "$W/two/outputs/sft/metrics.json" "$OUT/two-gpu-metrics.json"
cp "$W/one/outputs/sft/train_summary.json" "$OUT/one-gpu-train_summary.json"
cp "$W/two/outputs/sft/train_summary.json" "$OUT/two-gpu-train_summary.json"
cp "$W/two/eval/results.csv" "$OUT/eval-results.csv"
"$PY" - "$W" <<'PY' | tee -a "$LOG" | tee "$OUT/table.txt"
import json, sys
from pathlib import Path
import pandas as pd
w = Path(sys.argv[1])
rows = []
for run, name in (("one", "sft1"), ("two", "sft2")):
    out = w / run / "outputs" / "sft"
    hist, summ = json.loads((out / "metrics.json").read_text()), json.loads((out / "train_summary.json").read_text())
    losses = [h for h in hist if "loss" in h]
    rows.append({"run": f"{summ['world_size']} GPU", "steps": hist[-1]["step"], "tokens": max(h.get("num_input_tokens_seen", 0) for h in hist),
                 "tokens/s": round(summ["tokens_per_s"]), "first loss": round(losses[0]["loss"], 3),
                 "last loss": round(losses[-1]["loss"], 3), "train s": round(summ["seconds"], 1),
                 "wall s": int((w / f"{name}.s").read_text()), "peak GiB (rank 0)": round(summ["peak_gib"], 2)})
print(pd.DataFrame(rows).to_string(index=False))
print(f"2-GPU / 1-GPU tokens/s: {rows[1]['tokens/s'] / rows[0]['tokens/s']:.2f}")
ev = w / "two" / "eval"
ids = [json.loads(line)["id"] for line in (ev / "sft-cot.jsonl").read_text().splitlines()]
res = pd.read_csv(ev / "results.csv")
print(f"eval (2 processes, {int((w / 'eval2.s').read_text())} s wall): {len(ids)} records, {len(set(ids))} unique ids, "
      f"rank files left: {sorted(p.name for p in ev.glob('*.rank*'))}, results n={res['n'].tolist()}, "
      f"accuracy={res['accuracy'].round(3).tolist()}, parse failures={res['parse_fail_rate'].round(3).tolist()}")
n = json.loads((w / "eval.json").read_text())["sample_size"]
ok = len(ids) == len(set(ids)) == n and (res["n"] == n).all()
print("CHECK", "ok" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY

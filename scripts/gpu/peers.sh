#!/usr/bin/env bash
# Build the folder that one device call carries for benchmarks/peer_speed.py and benchmarks/generation_1b.py
# (issue 15): three site folders as tarballs (the GPU image has torch 2.11 / transformers 5.17 / peft but no trl,
# bitsandbytes, datasets, liger or unsloth), the ECQA data, the SmolLM2 tokenizer standing in for Llama's, a
# snapshot of helpers/ + benchmarks/, and the scripts that run there. About 25 MB of the 64 MiB a call may carry.
#   bash scripts/gpu/peers_carry.sh [DEST]      # DEST defaults to .carry-peers (git-ignored: /.carry*/)
# then on the device machine, from the repository root:  bash .carry-peers/train.sh  /  gen.sh  /  gap.sh 1-14
#
#   site-common:  bitsandbytes 0.50.2 with only its CUDA 13.x and CPU libraries (43 MB wheel -> ~7 MB), dill, multiprocess
#   site-project: trl 1.16.0, datasets 5.2.0, liger-kernel 0.8.5 (the project's own versions)
#   site-unsloth: unsloth + unsloth_zoo 2026.10.9 (its "studio" web app left out), which pin trl<=1.15 and
#                 datasets<5: trl 1.15.0, datasets 4.8.5, tyro and its needs, torchao, cut_cross_entropy, msgspec
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DEST=$(realpath -m "${1:-$REPO/.carry-peers}")
PY=${PY:-python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
get() {  # get DIR NAME==VERSION...: wheels for the GPU image's Python 3.12 on x86-64 Linux
  local dir=$1; shift
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$TMP/w-$dir" "$@"
}
get common bitsandbytes==0.50.2 dill==0.4.1 multiprocess==0.70.19
get project trl==1.16.0 datasets==5.2.0 liger-kernel==0.8.5
get unsloth unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 tyro==1.0.17 docstring_parser==0.18.0 \
  typeguard==4.6.1 shtab==1.13.0 torchao==0.18.0 cut_cross_entropy==25.1.1 msgspec==0.22.0
rm -rf "$DEST" && mkdir -p "$DEST/code"
for d in common project unsloth; do  # a wheel unpacked is an install (these have no scripts that matter here)
  mkdir -p "$TMP/s/$d"
  for w in "$TMP/w-$d"/*.whl; do unzip -q -o "$w" -d "$TMP/s/$d"; done
done
find "$TMP/s/common/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*_cpu.so' ! -name '*_cuda13*.so' -delete
rm -rf "$TMP/s/unsloth/studio" "$TMP/s/unsloth/unsloth_cli" "$TMP/s/unsloth/test"
for d in common project unsloth; do tar czf "$DEST/site-$d.tgz" -C "$TMP/s/$d" .; done
cp -r "$REPO/helpers" "$REPO/benchmarks" "$DEST/code/"
rm -rf "$DEST/code/benchmarks/results" "$DEST"/code/*/__pycache__
cp -r "${ECQA_DATA:-$REPO/../shared/data/ecqa}" "$DEST/ecqa" && chmod -R u+w "$DEST/ecqa"
(cd "$REPO" && "$PY" -c "import sys; from helpers import models; from transformers import LlamaConfig
models.load_tokenizer('smollm2-135m').save_pretrained(sys.argv[1])
LlamaConfig(vocab_size=49152).save_pretrained(sys.argv[1])  # helpers.models.resolve wants a config.json" "$DEST/tok")
cat > "$DEST/setup.sh" <<'EOF'
# sourced on the device machine from the repository root: unpack the three site folders, set the environment
C=$PWD/.carry-peers
for d in common project unsloth; do [ -d /tmp/s/$d ] || { mkdir -p /tmp/s/$d && tar xzf $C/site-$d.tgz -C /tmp/s/$d; }; done
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 \
  TOKENIZERS_PARALLELISM=false MCQ_CACHE=/tmp/mcqcache PYTHONPATH=/tmp/s/project:/tmp/s/common:$C/code
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, datasets, bitsandbytes, liger_kernel; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'datasets', datasets.__version__, 'bnb', bitsandbytes.__version__, torch.cuda.get_device_name())"
EOF
cat > "$DEST/train.sh" <<'EOF'
. .carry-peers/setup.sh
cd .carry-peers/code
timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth liger padding-free --stages sft dpo --precision bf16 fp16 \
  --steps 20 --dpo-steps 12 --tokenizer ../tok --data ../ecqa --work /tmp/peers --unsloth-site /tmp/s/unsloth \
  --site-after /tmp/s/common --out $OUT --deadline 545 2>&1 | grep -v "it/s\]\|examples/s\]\|s/it\]"
for s in project unsloth liger padding-free; do [ -f /tmp/peers/log-$s.txt ] && gzip -c /tmp/peers/log-$s.txt > $OUT/log-$s.txt.gz; done
true
EOF
cat > "$DEST/gen.sh" <<'EOF'
. .carry-peers/setup.sh
cd .carry-peers/code
timeout 560 python3 benchmarks/generation_1b.py --precision bf16 fp16 --models 4bit merged --sampling-questions 16 \
  --eval-questions 64 --tokenizer ../tok --data ../ecqa --work /tmp/peers --out $OUT 2>&1 | grep -v "it/s\]\|examples/s\]"
true
EOF
cat > "$DEST/gap.sh" <<'EOF'
# the runs that explain the training gap to Unsloth (benchmarks/NOTES.md), one device call each; every run warms up
# first (peer_speed's --warmup-steps), and 1 and 2 time the project before and after Unsloth (A-B-A):
#   bash .carry-peers/gap.sh 1   # SFT, project vs Unsloth at the default LoRA shape (r64, every linear layer)
#   bash .carry-peers/gap.sh 2   # DPO, the same
#   bash .carry-peers/gap.sh 3   # SFT at r64 on q/k/v/o only (no fused LoRA-MLP kernels), A-B-A
#   bash .carry-peers/gap.sh 4   # the project against its gradient-checkpointing levers (transformers 5.17)
#   bash .carry-peers/gap.sh 5   # DPO bf16, project vs Unsloth, then 6 steady steps of each under torch.profiler
#   bash .carry-peers/gap.sh 6   # SFT bf16, 48 steps a row, project-Unsloth-project-Unsloth (less noise than 16)
#   bash .carry-peers/gap.sh 7   # DPO bf16, 16 steps: the project with and without cuDNN attention, Unsloth between
#   bash .carry-peers/gap.sh 8   # SFT bf16, 48 steps: the project with and without cuDNN attention, A-B-A-B
#   bash .carry-peers/gap.sh 9   # SFT bf16, 24 steps: the project (cuDNN attention left out) vs Unsloth, A-B-A, then gc-offload
#   bash .carry-peers/gap.sh 10  # generation at 1B, bf16, 4-bit and merged: SDPA's own kernel choice vs no cuDNN
#   bash .carry-peers/gap.sh 11  # SFT and DPO forced fp16: the project (no cuDNN attention) vs Unsloth, A-B-A
#   bash .carry-peers/gap.sh 12  # SFT bf16, 24 steps: the memory gap: project, dropout-0, dropout-0-offload, Unsloth, project
#   bash .carry-peers/gap.sh 13  # SFT forced fp16, 24 steps: the memory gap: project, dropout-0, dropout-0-offload
#   bash .carry-peers/gap.sh 14  # SFT fp16: project, gc-offload, dropout-0-offload, Unsloth, then each side's allocations at its peak
#                                (ran before offloading and Liger were SFT defaults; now project = gc-offload, both with Liger)
#   bash .carry-peers/gap.sh 15  # the same in bf16
#   bash .carry-peers/gap.sh 16  # DPO forced fp16: project, gpu-checkpoints, Unsloth, project (ran when DPO asked for offloading,
#                                which TRL drops; DPO no longer asks, so now project = gpu-checkpoints)
#   bash .carry-peers/gap.sh 17  # SFT forced fp16, 6 steps: the project (offloaded) and + Liger, then each one's allocations at its peak
#                                (ran before Liger was the SFT default; now run --sides no-liger project)
#   bash .carry-peers/gap.sh 18  # SFT bf16 + fp16, 16 steps: today's defaults (offloaded checkpoints, Liger) vs Unsloth, A-B-A
#                                (ran before the bitsandbytes-manager fix: each side's second row, fp16, read 0.49 GiB high)
#   bash .carry-peers/gap.sh 19  # the same after the fix, 12 steps, A-B (session 20's device time allowed no more)
. .carry-peers/setup.sh
cd .carry-peers/code
common="--precision bf16 fp16 --steps 16 --dpo-steps 10 --tokenizer ../tok --data ../ecqa --out $OUT --deadline 545"
unsloth="--unsloth-site /tmp/s/unsloth --site-after /tmp/s/common"
case "$1" in
  1) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project --stages sft $common $unsloth \
       --work /tmp/peers-sft --tag peers-sft ;;
  2) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project --stages dpo $common $unsloth \
       --work /tmp/peers-dpo --tag peers-dpo ;;
  3) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project --lora-modules qkvo --stages sft \
       $common $unsloth --work /tmp/peers-qkvo --tag peers-qkvo ;;
  4) timeout 575 python3 benchmarks/peer_speed.py --sides project gc-half gc-offload --stages sft dpo $common \
       --work /tmp/peers --tag peers-gc ;;
  5) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth --stages dpo $common --precision bf16 \
       --profile-steps 6 $unsloth --work /tmp/peers-dpo --tag peers-dpo-profile ;;
  6) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project unsloth --stages sft $common \
       --precision bf16 --steps 48 $unsloth --work /tmp/peers-sft48 --tag peers-sft48 ;;
  7) timeout 575 python3 benchmarks/peer_speed.py --sides cudnn-attn project unsloth cudnn-attn project \
       --stages dpo $common --precision bf16 --dpo-steps 16 $unsloth --work /tmp/peers-dpo --tag peers-dpo-cudnn ;;
  8) timeout 575 python3 benchmarks/peer_speed.py --sides cudnn-attn project cudnn-attn project --stages sft \
       $common --precision bf16 --steps 48 --work /tmp/peers-sft48 --tag peers-sft-cudnn ;;
  9) timeout 370 python3 benchmarks/peer_speed.py --sides project unsloth project gc-offload --stages sft $common \
       --precision bf16 --steps 24 --deadline 330 $unsloth --work /tmp/peers-sft --tag peers-sft-default ;;
  10) timeout 575 python3 benchmarks/generation_1b.py --precision bf16 --models 4bit merged --paths project \
       --attention pytorch no-cudnn --sampling-questions 32 --eval-questions 128 --tokenizer ../tok --data ../ecqa \
       --work /tmp/gen --out $OUT ;;
  11) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project --stages sft dpo $common \
       --precision fp16 $unsloth --work /tmp/peers-fp16 --tag peers-fp16-default ;;
  12) timeout 575 python3 benchmarks/peer_speed.py --sides project dropout-0 dropout-0-offload unsloth project \
       --stages sft $common --precision bf16 --steps 24 $unsloth --work /tmp/peers-sft --tag peers-sft-memory ;;
  13) timeout 575 python3 benchmarks/peer_speed.py --sides project dropout-0 dropout-0-offload --stages sft $common \
       --precision fp16 --steps 24 --work /tmp/peers-sft --tag peers-sft-memory-fp16 ;;
  14|15) p=$([ "$1" = 14 ] && echo fp16 || echo bf16)
     timeout 575 python3 benchmarks/peer_speed.py --sides project gc-offload dropout-0-offload unsloth --stages sft \
       $common --precision $p --steps 6 --warmup-steps 0 --memory-steps 4 $unsloth --work /tmp/peers-sft \
       --tag peers-sft-peak-$p ;;
  16) timeout 575 python3 benchmarks/peer_speed.py --sides project gpu-checkpoints unsloth project --stages dpo $common \
       --precision fp16 $unsloth --work /tmp/peers-dpo --tag peers-dpo-offload ;;
  17) timeout 300 python3 benchmarks/peer_speed.py --sides project liger --stages sft $common --precision fp16 --steps 6 \
       --warmup-steps 0 --memory-steps 4 --deadline 270 --work /tmp/peers-sft --tag peers-sft-liger-fp16 ;;
  18) timeout 575 python3 benchmarks/peer_speed.py --sides project unsloth project --stages sft $common $unsloth \
       --work /tmp/peers-sft --tag peers-sft-defaults ;;
  19) timeout 430 python3 benchmarks/peer_speed.py --sides project unsloth --stages sft $common --steps 12 \
       --warmup-steps 2 --deadline 410 $unsloth --work /tmp/peers-sft --tag peers-sft-defaults-fixed ;;
esac 2>&1 | grep -v "it/s\]\|examples/s\]\|s/it\]"
true
EOF
du -sh "$DEST"

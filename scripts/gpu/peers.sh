#!/usr/bin/env bash
# The runs of benchmarks/peer_speed.py whose rows docs/speed.md and benchmarks/NOTES.md cite: the project's training
# beside Unsloth's and beside its own levers at Llama-3.2-1B shape, one experiment per call of the device runner.
#
# Unsloth 2026.10.9 pins trl<=1.15 and datasets<5 (the project has trl 1.16 and datasets 5.2), so its process gets a
# site folder of its own, built from wheels on a machine with PyPI, from the repository root, after gpu-bundle/1
# (bundle.sh starts by clearing gpu-bundle/, so it goes first):
#   bash scripts/gpu/bundle.sh && bash scripts/gpu/peers.sh bundle
# `bundle` writes gpu-bundle/peers/unsloth-wheels/ (about 10 MB): unsloth and unsloth_zoo 2026.10.9 (unsloth's
# "studio" web app and command line left out), trl 1.15.0, datasets 4.8.5, tyro and its needs, torchao,
# cut_cross_entropy and msgspec. On the GPU machine, from the repository root, with gpu-bundle/1 and gpu-bundle/peers
# brought (in one call, or in calls in a row while the machine stays warm; setup.sh lays out both):
#   . scripts/gpu/setup.sh && bash scripts/gpu/peers.sh EXPERIMENT [PEER_SPEED_OPTIONS ...]
#   bash scripts/gpu/peers.sh list                       # the experiments, as below
#   DRY_RUN=1 bash scripts/gpu/peers.sh EXPERIMENT       # print the command, run nothing (no GPU needed)
# Options after the name go to peer_speed.py after the experiment's own, and the last occurrence of an option wins
# (`--steps 2 --warmup-steps 0` makes a quick check). Rows go to $OUT/<date>-<card>-<tag>.json, the tag being that of
# the cited file. Where today's defaults would make two sides of a cited command the same (offloaded checkpoints and
# Liger became SFT defaults after some of these ran), the sides are named for what the run compared: `gpu-checkpoints`
# is the project before offloading, `no-liger` the project before Liger, and `gc-offload` asks DPO to offload.
set -euo pipefail
UNSLOTH="unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 tyro==1.0.17 docstring_parser==0.18.0
  typeguard==4.6.1 shtab==1.13.0 torchao==0.18.0 cut_cross_entropy==25.1.1 msgspec==0.22.0"

experiment() {  # experiment NAME: sets LIMIT (seconds for the call) and ARGS (peer_speed.py's options)
  LIMIT=575
  case $1 in
    sft-defaults)  # SFT bf16 + fp16, 12 steps: today's defaults (offloaded checkpoints, Liger) beside Unsloth, A-B
      LIMIT=430 ARGS="--sides project unsloth --stages sft --steps 12 --warmup-steps 2 --tag peers-sft-defaults-fixed" ;;
    sft-offload)  # SFT bf16, 24 steps: checkpoints on the GPU beside Unsloth, A-B-A, then offloaded (today's default)
      LIMIT=370 ARGS="--sides gpu-checkpoints unsloth gpu-checkpoints project --stages sft --precision bf16 --steps 24"
      ARGS+=" --tag peers-sft-default" ;;
    dpo-offload)  # DPO forced fp16: DPO asked to offload, checkpoints on the GPU, Unsloth, asked again
      ARGS="--sides gc-offload gpu-checkpoints unsloth gc-offload --stages dpo --precision fp16 --tag peers-dpo-offload" ;;
    dpo-cudnn)  # DPO bf16, 16 steps: the project with and without cuDNN attention, Unsloth between
      ARGS="--sides cudnn-attn project unsloth cudnn-attn project --stages dpo --precision bf16 --dpo-steps 16"
      ARGS+=" --tag peers-dpo-cudnn" ;;
    sft-cudnn)  # SFT bf16, 48 steps: the project with and without cuDNN attention, A-B-A-B
      ARGS="--sides cudnn-attn project cudnn-attn project --stages sft --precision bf16 --steps 48 --tag peers-sft-cudnn" ;;
    dpo-profile)  # DPO bf16: the project beside Unsloth, then 6 steady steps of each under torch.profiler
      ARGS="--sides project unsloth --stages dpo --precision bf16 --profile-steps 6 --tag peers-dpo-profile" ;;
    sft-liger)  # SFT forced fp16, 6 steps: without and with Liger's kernels, then what each holds at its peak
      LIMIT=300 ARGS="--sides no-liger project --stages sft --precision fp16 --steps 6 --warmup-steps 0 --memory-steps 4"
      ARGS+=" --tag peers-sft-liger-fp16" ;;
    sft-peak-fp16)  # SFT forced fp16, 6 steps: GPU checkpoints, offloaded, and with dropout 0, Unsloth; each one's peak
      ARGS="--sides gpu-checkpoints project dropout-0-offload unsloth --stages sft --precision fp16 --steps 6"
      ARGS+=" --warmup-steps 0 --memory-steps 4 --tag peers-sft-peak-fp16" ;;
    sft-memory)  # SFT bf16, 24 steps: checkpoints on the GPU, LoRA dropout 0, dropout 0 offloaded, Unsloth, A again
      ARGS="--sides gpu-checkpoints dropout-0 dropout-0-offload unsloth gpu-checkpoints --stages sft --precision bf16"
      ARGS+=" --steps 24 --tag peers-sft-memory" ;;
    sft-memory-fp16)  # the same forced fp16, without Unsloth
      ARGS="--sides gpu-checkpoints dropout-0 dropout-0-offload --stages sft --precision fp16 --steps 24"
      ARGS+=" --tag peers-sft-memory-fp16" ;;
    fp16-defaults)  # SFT and DPO forced fp16: the project beside Unsloth, A-B-A
      ARGS="--sides project unsloth project --stages sft dpo --precision fp16 --tag peers-fp16-default" ;;
    sft-aba)  # SFT bf16 + fp16: the project before and after Unsloth, A-B-A
      ARGS="--sides project unsloth project --stages sft --tag peers-sft" ;;
    dpo-aba)  # DPO bf16 + fp16: the project before and after Unsloth, A-B-A
      ARGS="--sides project unsloth project --stages dpo --tag peers-dpo" ;;
    sft-qkvo)  # SFT bf16 + fp16 with LoRA on q/k/v/o only (no fused LoRA-MLP kernels for Unsloth), A-B-A
      ARGS="--sides project unsloth project --lora-modules qkvo --stages sft --tag peers-qkvo" ;;
    *) echo "no experiment '$1'; bash scripts/gpu/peers.sh list" >&2; return 1 ;;
  esac
  [[ " $ARGS " == *" --precision "* ]] || ARGS+=" --precision bf16 fp16"  # where the experiment says nothing else
  [[ " $ARGS " != *" sft"* || " $ARGS " == *" --steps "* ]] || ARGS+=" --steps 16"
  [[ " $ARGS " != *" dpo"* || " $ARGS " == *" --dpo-steps "* ]] || ARGS+=" --dpo-steps 10"
}

case ${1:-} in
  "" | -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0 ;;
  list)  # the case lines above and their comments
    sed -n 's/^    \([a-z0-9-]*\))  # \(.*\)/\1\t\2/p' "$0" | awk -F'\t' '{printf "%-16s %s\n", $1, $2}'
    exit 0 ;;
  bundle)  # on a machine with PyPI: Unsloth's wheels for the GPU image's Python 3.12 on x86-64 Linux
    D=gpu-bundle/peers/unsloth-wheels
    rm -rf gpu-bundle/peers && mkdir -p "$D"
    # shellcheck disable=SC2086  # one word a package
    "${PY:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform any -d "$D" $UNSLOTH
    # unsloth's wheel is 29 MB, 26 of them its studio web app: left out with its command line; torchao's top-level
    # `test` package would hide the standard library's. Each wheel's RECORD to match.
    "${PY:-python3}" - "$D" <<'PY'
import glob, os, sys, zipfile
DROP = {"unsloth-": ("studio/", "unsloth_cli/", "unsloth-2026.10.9.dist-info/entry_points.txt"), "torchao-": ("test/",)}
for prefix, drop in DROP.items():
    (wheel,) = glob.glob(os.path.join(sys.argv[1], prefix + "[0-9]*.whl"))
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(wheel + ".new", "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith(drop):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = "".join(x for x in data.decode().splitlines(True) if not x.startswith(drop)).encode()
            dst.writestr(item, data)
    os.replace(wheel + ".new", wheel)
PY
    du -sh gpu-bundle/peers
    exit 0 ;;
esac

name=$1; shift
experiment "$name"
if [[ -n ${DRY_RUN:-} ]]; then
  echo "timeout $LIMIT python3 benchmarks/peer_speed.py $ARGS --deadline $((LIMIT - 30)) $*"
  exit 0
fi

# On the GPU machine: setup.sh has laid the bundles out beside the ECQA folder it names, and put the project's site
# folder (trl 1.16, datasets 5.2, bitsandbytes, liger-kernel) and the repository on PYTHONPATH
: "${ECQA_DATA:?run . scripts/gpu/setup.sh first}" "${OUT:?set OUT to the folder that comes back}"
G=$(dirname "$ECQA_DATA")
W=/tmp/peers
mkdir -p "$W" "$OUT"
export UNSLOTH_DISABLE_STATISTICS=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the bundle's SmolLM2 tokenizer stands in for Llama's; helpers.models.resolve asks a folder for a config.json
TOK=$W/tokenizer
if [ ! -f "$TOK/config.json" ]; then
  cp -r "$G/tokenizer/." "$TOK/"
  python3 -c "import sys; from transformers import LlamaConfig; LlamaConfig(vocab_size=49152).save_pretrained(sys.argv[1])" "$TOK"
fi
UNSLOTH_SITE=/tmp/unsloth-site  # installed once while the machine stays warm
if [[ " $ARGS $* " == *" unsloth "* ]] && [ ! -f "$UNSLOTH_SITE/.installed" ]; then
  [ -d "$G/unsloth-wheels" ] || { echo "no Unsloth wheels: bring gpu-bundle/peers (bash scripts/gpu/peers.sh bundle)" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$UNSLOTH_SITE" \
    "$G"/unsloth-wheels/*.whl && touch "$UNSLOTH_SITE/.installed"
fi
nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
# Unsloth's process: its own site first, then the rest of the path (bitsandbytes and the others from the project's)
# shellcheck disable=SC2086  # ARGS and PYTHONPATH split into words on purpose
timeout "$LIMIT" python3 benchmarks/peer_speed.py $ARGS --deadline $((LIMIT - 30)) --tokenizer "$TOK" \
  --data "$ECQA_DATA" --work "$W/$name" --out "$OUT" --unsloth-site "$UNSLOTH_SITE" --site-after ${PYTHONPATH//:/ } "$@" \
  2>&1 | grep -v "it/s\]\|examples/s\]\|s/it\]" || true

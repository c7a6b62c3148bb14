#!/usr/bin/env bash
# README's test command (`make test`) runs this after installing .venv.
# 1. system parts (chromium, postgresql) + a throwaway PostgreSQL  (scripts/services.sh)
# 2. the optional engines the integration tests use, built once and cached in ~/.cache:
#    llama-cpp-python wheel (compiles llama.cpp: ~7-20 min the first time) and a separate
#    vLLM virtualenv (~3 min the first time) - both run in parallel with the lint step
# 3. ruff, then pytest (default: everything but @slow)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT="${MEDLENS_CACHE_ROOT:-$HOME/.cache/medlens}"
export MEDLENS_TEST_MODELS_CACHE="${MEDLENS_TEST_MODELS_CACHE:-$CACHE_ROOT/test-models}"
export MEDLENS_VLLM_VENV="${MEDLENS_VLLM_VENV:-$CACHE_ROOT/vllm-venv}"
export MEDLENS_WHEEL_CACHE="${MEDLENS_WHEEL_CACHE:-$CACHE_ROOT/wheels}"
mkdir -p "$CACHE_ROOT/logs"

source scripts/services.sh

setup_engines="${MEDLENS_SETUP_ENGINES:-1}"
if [ "$setup_engines" = 1 ]; then
  start=$(date +%s)
  bash scripts/build-llamacpp.sh >"$CACHE_ROOT/logs/llamacpp.log" 2>&1 & llama_pid=$!
  bash scripts/setup-vllm.sh >"$CACHE_ROOT/logs/vllm.log" 2>&1 & vllm_pid=$!
fi

.venv/bin/ruff check .

if [ "$setup_engines" = 1 ]; then
  ok=1
  wait "$llama_pid" || { echo "llama-cpp-python build failed:"; tail -n 40 "$CACHE_ROOT/logs/llamacpp.log"; ok=0; }
  wait "$vllm_pid" || { echo "vLLM venv setup failed:"; tail -n 40 "$CACHE_ROOT/logs/vllm.log"; ok=0; }
  echo "engines ready in $(( $(date +%s) - start )) s"
  [ "$ok" = 1 ] || exit 1
fi

# The tests start and stop their own Orthanc and OpenID provider; PostgreSQL, when
# services.sh started it, is stopped here whatever pytest's outcome.
trap stop_services EXIT
.venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Build llama-cpp-python (the `gguf` extra) once into a wheel cache, then install it
# into the project venv. Idempotent: a cached wheel is reused, an installed matching
# version is left alone. Compiling llama.cpp takes 10-20 min on 2 cores, which is
# why CI must cache ${MEDLENS_WHEEL_CACHE}.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
CACHE="${MEDLENS_WHEEL_CACHE:-$HOME/.cache/medlens-wheels}"
PY="${MEDLENS_PYTHON:-.venv/bin/python}"
mkdir -p "$CACHE"

installed="$("$PY" -c 'import importlib.metadata as m
try: print(m.version("llama_cpp_python"))
except m.PackageNotFoundError: print("")' 2>/dev/null || true)"
if [[ "$installed" == "$LLAMA_CPP_VERSION" ]]; then
  echo "llama-cpp-python $installed already installed"
  exit 0
fi

wheel="$(ls "$CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$wheel" ]]; then
  echo "building llama-cpp-python $LLAMA_CPP_VERSION wheel into $CACHE (slow: compiles llama.cpp)"
  start=$(date +%s)
  # GGML_NATIVE=OFF: portable binary (a cached wheel may run on another CPU);
  # AVX2/FMA/F16C are what any x86-64 CI runner from the last decade has.
  # No CUDA/Metal here: the GGUF route is the laptop/CPU route.
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=ON}"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python -w "$CACHE" "llama-cpp-python==$LLAMA_CPP_VERSION"
  echo "wheel built in $(( $(date +%s) - start )) s"
  wheel="$(ls "$CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -n1)"
fi
# Its runtime deps (numpy, jinja2, diskcache, typing-extensions) are small.
"$PY" -m pip install "$wheel"
echo "installed $wheel"

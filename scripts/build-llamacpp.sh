#!/usr/bin/env bash
# Build llama-cpp-python (the `gguf` extra) once into a wheel cache, then install it
# into the project venv. Idempotent and cache-friendly: the sdist, the built wheel and
# llama.cpp's HF->GGUF conversion scripts (vendored in the sdist; used by the vision
# test) all live in ${MEDLENS_WHEEL_CACHE}. Compiling llama.cpp takes 7-20 min on
# 2 cores, so CI should cache that folder.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
CACHE="${MEDLENS_WHEEL_CACHE:-$HOME/.cache/medlens-wheels}"
PY="${MEDLENS_PYTHON:-.venv/bin/python}"
SDIST="$CACHE/llama_cpp_python-$LLAMA_CPP_VERSION.tar.gz"
CONVERT="$CACHE/llama.cpp-convert-$LLAMA_CPP_VERSION"
mkdir -p "$CACHE"

if [[ ! -f "$SDIST" ]]; then
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$CACHE" \
    "llama-cpp-python==$LLAMA_CPP_VERSION"
fi

# The conversion script + its modules + the matching gguf-py (a few MB).
if [[ ! -f "$CONVERT/convert_hf_to_gguf.py" ]]; then
  tmp="$(mktemp -d)"
  tar -xzf "$SDIST" -C "$tmp" \
    "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/convert_hf_to_gguf.py" \
    "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/conversion" \
    "llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp/gguf-py"
  rm -rf "$CONVERT"
  mv "$tmp/llama_cpp_python-$LLAMA_CPP_VERSION/vendor/llama.cpp" "$CONVERT"
  rm -rf "$tmp"
  echo "llama.cpp conversion scripts in $CONVERT"
fi

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
  # GGML_NATIVE=OFF: a portable binary (a cached wheel may run on another CPU); AVX2/FMA/
  # F16C are on every x86-64 CI runner of the last decade. CPU only: the GGUF route is
  # the laptop route (GPU users serve with vLLM).
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF}"
  export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  "$PY" -m pip wheel --no-deps -w "$CACHE" "$SDIST"
  echo "wheel built in $(( $(date +%s) - start )) s"
  wheel="$(ls "$CACHE"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -n1)"
fi
# Runtime deps (numpy, jinja2, diskcache, typing-extensions) are small and pinned.
"$PY" -m pip install "$wheel"
echo "installed $wheel"

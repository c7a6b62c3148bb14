#!/usr/bin/env bash
# README's test command (`make test`) runs this after installing .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"

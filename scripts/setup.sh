#!/usr/bin/env bash
# Set up everything on a fresh machine with only Python 3.10+: a virtual environment in .venv
# with the CPU build of torch (pinned here; the package itself accepts a wide range), then the
# package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first and pinned: a loose requirement in a fresh environment pulls a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "codec is installed in .venv: run .venv/bin/codec --help" >&2

#!/usr/bin/env bash
# Set up everything on a fresh machine with only Python 3.10+: a virtual environment in .venv
# with the CPU build of torch (pinned here; the package itself accepts a wide range), then the
# package with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first, pinned, from PyTorch's CPU index: on Linux, PyPI's torch is the multi-GB CUDA build.
# pip's own sources (a local wheel folder) still count; where that index is out of reach and they
# have no torch, PyPI's build is the fallback (whose messages, unlike the first try's, are shown).
.venv/bin/python -m pip install --quiet --index-url https://download.pytorch.org/whl/cpu --timeout 20 --retries 0 \
    torch==2.13.0 2>/dev/null || .venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "codec is installed in .venv: run .venv/bin/codec --help" >&2

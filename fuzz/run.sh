#!/usr/bin/env bash
# Fuzz the protocol core for a bounded time: fuzz/run.sh [SECONDS] (default 60).
# The PROXY header parser has a target of its own: fuzz/fuzz_proxyheader.py (same flags).
# Findings (crash-*, timeout-*) are written to fuzz/findings/; the corpus grows
# in fuzz/corpus/. Both are ignored by git.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
mkdir -p fuzz/corpus fuzz/findings
exec "${PYTHON:-.venv/bin/python}" fuzz/fuzz_protocol.py fuzz/corpus \
  -max_total_time="$seconds" -artifact_prefix=fuzz/findings/ -max_len=4096 -print_final_stats=1

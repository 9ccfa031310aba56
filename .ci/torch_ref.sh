#!/usr/bin/env bash
# Runs the tests that compare against PyTorch references (pytest -m torch_ref);
# `--install-only` just prepares their venv.
#
# torch is a test-only dependency, so it lives in its own venv (.venv-ref, gitignored) and never
# leaks into the main environment. The venv is created on first use and reused afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
VENV=.venv-ref

if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
# Pinned: the Inception port under test is pytorch-fid's, and the CPU numbers are compared
# against exactly these builds.
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "torch==2.14.1" "torchvision==0.29.1" pytorch-fid
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e ".[test]"
if [[ "${1:-}" == --install-only ]]; then
  exit 0
fi

export JAX_PLATFORMS=cpu
# torch goes in first: triton (torchvision -> torch._dynamo) segfaults on import when
# TensorFlow, which other test modules import at collection, is already loaded; so in this
# process, not in xdist workers (-n 0).
exec "$VENV/bin/python" -c 'import sys, torchvision, pytest; sys.exit(pytest.main(sys.argv[1:]))' \
  -m torch_ref -q -n 0 -p no:cacheprovider "$@"

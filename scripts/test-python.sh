#!/usr/bin/env bash
# Tests the Python package ipn (crates/ipn-py): makes a virtual environment
# with Debian's python3 in target/python-venv, installs maturin, pytest and
# the package built from this tree into it, and runs the pytest suite
# (crates/ipn-py/tests): the API, multi-process publish/subscribe, asyncio,
# permissions as an unprivileged user (needs root), and Python, C and the
# `ipn` command on one network.
#
# Usage: scripts/test-python.sh [PYTEST ARGS...]     (scripts/test.sh runs it)
# Needs: python3 and python3-venv (scripts/deps.sh), cargo, cc, PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test-python] %s\n' "$*" >&2; }
die() { printf '[test-python] ERROR: %s\n' "$*" >&2; exit 1; }

python=/usr/bin/python3
[ -x "$python" ] || die "$python not found: apt-get install python3 python3-venv, or run scripts/deps.sh"
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
  log "making the virtual environment $venv"
  "$python" -m venv "$venv" || die "could not make a venv: apt-get install python3-venv"
fi
# Its maturin runs `maturin` (and the tests `python`) from PATH.
export PATH=$PWD/$venv/bin:$PATH
log "installing maturin, pytest into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" "pytest-timeout>=2"
log "building and installing the package (pip install ./crates/ipn-py)"
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --force-reinstall ./crates/ipn-py

# What the tests talk to besides Python: the `ipn` command and libipn.
cargo build -q --release -p ipn-cli
cargo build -q -p ipn-capi
export IPN_BIN=$PWD/target/release/ipn IPN_LIB_DIR=$PWD/target/debug

log "running pytest"
# No test collected is a failure too (pytest's exit code 5).
"$venv/bin/python" -m pytest crates/ipn-py/tests -p no:cacheprovider --timeout=300 -q -rfE "$@"

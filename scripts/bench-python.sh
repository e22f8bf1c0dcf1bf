#!/usr/bin/env bash
# Benchmarks publish/subscribe from Python, every publisher and subscriber
# a process of its own, in one run: ipn (per call, and with the batch
# calls send_many/recv_many) against pyzmq PUB/SUB over ipc://,
# multiprocessing.Queue and a Unix datagram socket per subscriber; 64 and
# 1500 B messages, 1 publisher to 1 and to 4 subscribers. Prints messages
# received per second per subscriber, loss and CPU per message
# (crates/ipn-py/bench/pubsub.py says how each is measured); the figures
# in BENCHMARKS.md come from it.
#
# It makes the virtual environment target/python-venv (as
# scripts/test-python.sh does) and installs pyzmq and the package built
# from this tree into it. As root it runs at nice -10, so that other work
# on the machine perturbs the measurement less (every transport alike).
#
# Usage: scripts/bench-python.sh [pubsub.py OPTIONS: --duration S --repeat N ...]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bench-python] %s\n' "$*" >&2; }
die() { printf '[bench-python] ERROR: %s\n' "$*" >&2; exit 1; }

python=/usr/bin/python3
[ -x "$python" ] || die "$python not found: apt-get install python3 python3-venv, or run scripts/deps.sh"
venv=target/python-venv
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv" \
  || die "could not make a venv: apt-get install python3-venv"
export PATH=$PWD/$venv/bin:$PATH
log "installing maturin, pyzmq and the package into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.5,<2" "pyzmq>=25"
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --force-reinstall ./crates/ipn-py

nice=()
[ "$(id -u)" -eq 0 ] && nice=(nice -n -10)
log "pyzmq $("$venv/bin/python" -c 'import zmq; print(zmq.__version__, "libzmq", zmq.zmq_version())'), Python $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
"${nice[@]}" "$venv/bin/python" crates/ipn-py/bench/pubsub.py "$@"

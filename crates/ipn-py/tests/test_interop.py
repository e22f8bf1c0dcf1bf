"""Python, C (libipn) and Rust (the `ipn` command's pub and sub) on one
network at once: each one's frames reach the others."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import ipn
from conftest import HERE, WORKSPACE, wait_for


def compile_c_peer(libipn_dir: Path, out: Path) -> tuple[Path, Path]:
    """Compiles c/peer.c against ipn.h and libipn.so; returns the program
    and the directory to load the library from (cargo builds libipn.so,
    whose soname is libipn.so.0: both names are put there)."""
    lib = out / "lib"
    lib.mkdir()
    for name in ("libipn.so", "libipn.so.0"):
        shutil.copy(libipn_dir / "libipn.so", lib / name)
    program = out / "peer"
    subprocess.run(
        ["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1",
         "-I", str(WORKSPACE / "crates/ipn-capi/include"), str(HERE / "c/peer.c"),
         "-L", str(lib), "-lipn", "-o", str(program)],
        check=True,
    )
    return program, lib


def test_python_c_and_rust_on_one_network(net: str, scratch: Path, ipn_bin: Path,
                                          libipn_dir: Path):
    c_peer, lib = compile_c_peer(libipn_dir, scratch)
    with ipn.join(net, description="python") as py:
        sub = subprocess.Popen([ipn_bin, "sub", net, "-n", "3", "--timeout", "30"],
                               stdout=subprocess.PIPE, text=True)
        c = subprocess.Popen([c_peer, net, "2"], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "LD_LIBRARY_PATH": str(lib)})
        assert c.stdout.readline() == "ready\n"
        wait_for(lambda: py.readers == 3, what="ipn sub and the C peer to join")

        # Python -> C and Rust; C answers Python (and Rust hears it too).
        py.send(b"hello from python")
        assert py.recv(timeout=20) == b"C got: hello from python"
        assert c.stdout.readline() == "hello from python\n"

        # Rust -> Python and C; C answers.
        subprocess.run([ipn_bin, "pub", net], input=b"hello from rust\n", check=True,
                       timeout=30)
        assert py.recv(timeout=20) == b"hello from rust"
        assert py.recv(timeout=20) == b"C got: hello from rust"
        out, _ = c.communicate(timeout=30)
        assert c.returncode == 0 and out == "hello from rust\n"

        out, _ = sub.communicate(timeout=30)
        assert sub.returncode == 0
        assert out.splitlines() == ["hello from python", "C got: hello from python",
                                    "hello from rust"]

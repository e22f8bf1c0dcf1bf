"""Permissions as a real unprivileged user: outside the network's group,
joining fails with PermissionError naming the path and the group to ask
to be added to; inside it, the user's Python process exchanges frames with
ours.

Needs root (it creates a system user and group, as the Rust permission
tests do, and runs Python as that user with setpriv). CI runs as root;
elsewhere these tests fail saying so. The user runs Debian's
/usr/bin/python3 on a copy of the installed package in a directory it may
read, wherever the virtual environment is.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

import ipn

USER = "ipn-test-user"
GROUP = "ipn-test-net"
PYTHON = "/usr/bin/python3"

PEER = """
import json, sys, ipn
path = sys.argv[1]
try:
    port = ipn.join(path, description="unprivileged")
except OSError as e:
    print(json.dumps({"error": type(e).__name__, "errno": e.errno, "message": str(e)}))
    sys.exit(0)
print(json.dumps({"joined": port.index}), flush=True)
port.send(b"from the user")
print(json.dumps({"got": port.recv(timeout=20).decode()}), flush=True)
"""


@pytest.fixture(scope="module")
def user():
    if os.geteuid() != 0:
        pytest.fail("these tests need root: they create the user ipn-test-user and the "
                    "group ipn-test-net and run Python as that user (CI runs as root)")
    if not Path(PYTHON).exists():
        pytest.fail(f"{PYTHON} is missing: install the Debian package python3")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", USER], check=True)
    account = pwd.getpwnam(USER)
    assert USER not in grp.getgrnam(GROUP).gr_mem, f"{USER} must not be in {GROUP}"
    return account.pw_uid, account.pw_gid, grp.getgrnam(GROUP).gr_gid


@pytest.fixture
def package(scratch: Path) -> Path:
    """A copy of the installed package that any user may read."""
    where = scratch / "site"
    shutil.copytree(Path(ipn.__file__).parent, where / "ipn",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for d, _, files in os.walk(where):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644 if not f.endswith(".so") else 0o755)
    return where


def run_as_user(user, package: Path, path: str, member: bool) -> subprocess.Popen:
    uid, gid, net_gid = user
    groups = [f"--groups={net_gid}"] if member else ["--clear-groups"]
    return subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", *groups, "--",
         PYTHON, "-c", PEER, path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"}, cwd="/",
    )


def test_outsider_gets_permission_error_naming_the_group(user, package: Path, scratch: Path):
    path = str(scratch / "closed")
    ipn.create(path, mode=0o770)  # group root: the user is not in it
    peer = run_as_user(user, package, path, member=False)
    out, err = peer.communicate(timeout=30)
    assert peer.returncode == 0, err
    answer = json.loads(out.splitlines()[-1])
    assert answer["error"] == "PermissionError" and answer["errno"] == 13, answer
    assert path in answer["message"] and "permission denied" in answer["message"]
    assert "ask to be added to group 'root'" in answer["message"], answer
    ipn.remove(path, force=True)


def test_member_of_the_group_exchanges_frames(user, package: Path, scratch: Path):
    path = str(scratch / "shared")
    ipn.create(path, mode=0o770, group=GROUP)
    with ipn.join(path, description="root") as me:
        peer = run_as_user(user, package, path, member=True)
        first = json.loads(peer.stdout.readline())
        assert "joined" in first, (first, peer.stderr.read())
        assert me.recv(timeout=20) == b"from the user"
        me.send(b"from root")
        out, err = peer.communicate(timeout=30)
        assert peer.returncode == 0, err
        assert json.loads(out.splitlines()[-1]) == {"got": "from root"}
    ipn.remove(path, force=True)

#!/usr/bin/env python3
"""Checks that the workspace's stated rust-version holds for a normal build.

No toolchain of that version can be had here (rustup cannot download), so
instead of building with it this reads `cargo metadata` (Cargo.lock, for
x86_64 Linux) and checks that no crate a normal build compiles (the
workspace's crates, their normal and build dependencies, transitively)
declares a rust-version above the workspace's. The code itself is checked
by clippy's `incompatible_msrv` lint (std APIs newer than rust-version),
which `cargo clippy -D warnings` runs against the same rust-version.

Also prints what the tests (dev-dependencies) and the loom build need, as
the comment in Cargo.toml states them, so that a change is seen.

Usage: scripts/msrv.py   (exit status 1 if a normal dependency needs more)
"""

import json
import subprocess
import sys


def version(text):
    """'1.85' or '1.85.0' as a tuple to compare."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def metadata(*extra):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def reachable(meta, kinds, roots):
    """Packages reachable from `roots` along dependencies of `kinds`
    (None: normal, "build", "dev"), dev ones only from the roots."""
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    seen = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            dep_kinds = {k["kind"] for k in dep["dep_kinds"]}
            allowed = set(kinds) if pid in roots else set(kinds) - {"dev"}
            if dep_kinds & allowed:
                todo.append(dep["pkg"])
    return seen


def neediest(meta, ids):
    """The highest rust-version among `ids`, and the packages declaring it."""
    packages = {p["id"]: p for p in meta["packages"]}
    best, names = (0, 0, 0), []
    for pid in ids:
        p = packages[pid]
        if not p.get("rust_version"):
            continue
        v = version(p["rust_version"])
        label = f"{p['name']} {p['version']}"
        if v > best:
            best, names = v, [label]
        elif v == best:
            names.append(label)
    return best, sorted(names)


def test_only_members(meta, members):
    """Members that other members depend on, but only as dev-dependencies."""
    kinds = {}
    for node in meta["resolve"]["nodes"]:
        if node["id"] not in members:
            continue
        for dep in node["deps"]:
            if dep["pkg"] in members:
                kinds.setdefault(dep["pkg"], set()).update(
                    k["kind"] for k in dep["dep_kinds"]
                )
    return {m for m, k in kinds.items() if k == {"dev"}}


def shown(v):
    return ".".join(str(p) for p in v)


def main():
    meta = metadata("--filter-platform", "x86_64-unknown-linux-gnu")
    members = set(meta["workspace_members"])
    packages = {p["id"]: p for p in meta["packages"]}
    stated = {version(packages[m]["rust_version"]) for m in members}
    if len(stated) != 1:
        print(f"msrv: workspace members state different rust-versions: {stated}")
        return 1
    (ours,) = stated

    # Crates the others take only as dev-dependencies (the tests' helpers,
    # crates/test-support) are part of the tests, not of a normal build.
    test_only = test_only_members(meta, members)
    normal = reachable(meta, [None, "build"], members - test_only)
    top, who = neediest(meta, normal - members)
    tests, test_who = neediest(
        meta, reachable(meta, [None, "build", "dev"], members) - members
    )
    print(f"msrv: the workspace states rust-version {shown(ours)}")
    print(f"msrv: a normal build's dependencies need at most {shown(top)} ({', '.join(who)})")
    print(f"msrv: the tests need {shown(tests)} ({', '.join(test_who)})")

    # cfg(loom) is not set for cargo metadata, so the filtered resolve has
    # no loom: its needs are those of the loom crate and its dependencies
    # on any platform (generator needs the same Rust on Linux as anywhere).
    loom_meta = metadata()
    loom_ids = [p["id"] for p in loom_meta["packages"] if p["name"] == "loom"]
    if loom_ids:
        lv, lwho = neediest(loom_meta, reachable(loom_meta, [None, "build"], loom_ids))
        print(f"msrv: the loom build needs {shown(lv)} ({', '.join(lwho)})")

    if top > ours:
        print(
            f"msrv: FAILED: {', '.join(who)} need(s) Rust {shown(top)}, above the stated "
            f"{shown(ours)}; raise rust-version in Cargo.toml (and say why there) or "
            "pin an older version of the dependency"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

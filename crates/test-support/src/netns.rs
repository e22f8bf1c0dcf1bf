//! Network namespaces, interfaces and helper processes made by a test,
//! all removed when the [`Lab`] that made them drops.
//!
//! Invariants:
//! - Every namespace a `Lab` makes is named its base name followed by
//!   [`tag`], the test process's id: two test runs on one machine (or a
//!   leftover of a killed run) never share one, and a leftover of the same
//!   process is removed before the namespace is made anew.
//! - An interface made inside a namespace goes with it; one in the host's
//!   namespace is removed only if the test handed it to [`Lab::links`].
//! - Helper processes are killed and reaped before the namespaces they
//!   may run in are removed.

use std::fs::File;
use std::process::{Child, Command, Stdio};

use nix::sched::{setns, CloneFlags};

use crate::{must, run};

/// The kernel's longest interface name (IFNAMSIZ less the NUL).
const IFNAME_MAX: usize = 15;

/// This process's id, as text: what makes namespace and interface names
/// unique to one test run.
pub fn tag() -> String {
    std::process::id().to_string()
}

/// The interface name `base` followed by [`tag`]; fails the test if that
/// is longer than the kernel takes, naming it, rather than letting `ip`
/// fail later with a vaguer message.
#[track_caller]
pub fn ifname(base: &str) -> String {
    let name = format!("{base}{}", tag());
    assert!(
        name.len() <= IFNAME_MAX,
        "interface name {name:?} is longer than {IFNAME_MAX} bytes: give it a shorter base than {base:?}"
    );
    name
}

/// Network namespaces, interfaces and helper processes, all removed on
/// drop (see the module's invariants).
#[derive(Debug, Default)]
pub struct Lab {
    /// The namespaces made by [`Lab::netns`].
    pub namespaces: Vec<String>,
    /// Interfaces in the host's namespace, deleted on drop (those moved
    /// into a namespace go with it: deleting them again fails, harmlessly).
    pub links: Vec<String>,
    /// Processes killed and reaped on drop.
    pub helpers: Vec<Child>,
}

impl Lab {
    /// A fresh namespace named `base` followed by [`tag`], its loopback
    /// up; returns its name.
    #[track_caller]
    pub fn netns(&mut self, base: &str) -> String {
        let name = format!("{base}{}", tag());
        let _ = run("ip", &["netns", "del", &name]);
        self.namespaces.push(name.clone());
        must("ip", &["netns", "add", &name]);
        must("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair `a`–`b` in the host's namespace; `a` is deleted on
    /// drop (and `b` with it, wherever it went).
    #[track_caller]
    pub fn veth(&mut self, a: &str, b: &str) {
        self.links.push(a.to_string());
        must("ip", &["link", "add", a, "type", "veth", "peer", "name", b]);
    }

    /// Starts `program ARGS` in namespace `ns` (`ip netns exec`), its
    /// output discarded, as a helper killed on drop (a server, say).
    #[track_caller]
    pub fn spawn_in(&mut self, ns: &str, program: &str, args: &[&str]) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running ip netns exec {ns} {program}: {e}"));
        self.helpers.push(child);
    }

    /// Moves `ifname` into `ns`, gives it `addr`, sets it up.
    #[track_caller]
    pub fn place(&self, ifname: &str, ns: &str, addr: &str) {
        must("ip", &["link", "set", ifname, "netns", ns]);
        add_address(ns, ifname, addr);
        link_up(ns, ifname);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut child in self.helpers.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Gives `ifname` in `ns` the address `addr` (`10.0.0.1/24`, or an IPv6
/// one, which skips duplicate address detection so that it is usable at
/// once).
#[track_caller]
pub fn add_address(ns: &str, ifname: &str, addr: &str) {
    let mut args = vec!["-n", ns, "addr", "add", addr, "dev", ifname];
    if addr.contains(':') {
        args.push("nodad");
    }
    must("ip", &args);
}

/// Sets `ifname` in `ns` up.
#[track_caller]
pub fn link_up(ns: &str, ifname: &str) {
    must("ip", &["-n", ns, "link", "set", ifname, "up"]);
}

/// Makes `ip` a permanent neighbour at `mac` on `ifname` in `ns`, so that
/// frames go to it without an ARP or ND round (made, or changed if there).
#[track_caller]
pub fn static_neighbour(ns: &str, ifname: &str, ip: &str, mac: &str) {
    must(
        "ip",
        &[
            "-n",
            ns,
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    );
}

/// Runs `program ARGS` in namespace `ns` (`ip netns exec`), which must
/// succeed; returns its standard output.
#[track_caller]
pub fn must_in(ns: &str, program: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    must("ip", &all)
}

/// Runs `f` on a new thread that has entered network namespace `ns`, and
/// returns what it returns. What `f` opens (sockets, `/dev/net/tun`)
/// belongs to that namespace for good, whichever thread uses it later.
#[track_caller]
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_end_with_this_process_id() {
        let pid = std::process::id();
        assert_eq!(tag(), pid.to_string());
        assert_eq!(ifname("ipx"), format!("ipx{pid}"));
    }

    #[test]
    #[should_panic(expected = "is longer than 15 bytes: give it a shorter base")]
    fn an_interface_name_the_kernel_would_refuse_fails_naming_it() {
        ifname("averyverylongbase");
    }
}

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
use std::process::{Child, Command};

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

    /// Moves `ifname` into `ns`, gives it `addr`, sets it up.
    #[track_caller]
    pub fn place(&self, ifname: &str, ns: &str, addr: &str) {
        must("ip", &["link", "set", ifname, "netns", ns]);
        must("ip", &["-n", ns, "addr", "add", addr, "dev", ifname]);
        must("ip", &["-n", ns, "link", "set", ifname, "up"]);
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

//! Helpers of `ipn-attach`'s integration tests (those every crate's tests
//! share, root, namespaces and programs run, are in `ipn_test_support`):
//!
//! - [`mac_of`] and [`tcp_in_csum_errors`]: what a namespace's kernel says;
//! - [`check_frame`]: an Ethernet frame's IPv4 header and TCP/UDP checksums,
//!   verified by RFC 1071's reference loop (`ipn_test_support::checksum`),
//!   not by the library's;
//! - [`Pcap`] and [`tcpdump_checks`]: frames written to a pcap file and read
//!   back by the real tcpdump, which verifies the checksums once more.
//!
//! Nothing here ever skips a test.

#![allow(dead_code)] // each test file uses a part of this module

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use ipn_test_support::checksum::reference_fold;
use ipn_test_support::{must, run};

/// The interface's MAC address in `ns`, from `ip -j link`.
#[track_caller]
pub fn mac_of(ns: &str, ifname: &str) -> [u8; 6] {
    let out = must("ip", &["-n", ns, "-br", "link", "show", ifname]);
    // "NAME  STATE  aa:bb:cc:dd:ee:ff <FLAGS>"
    let text = out
        .split_whitespace()
        .find(|w| w.len() == 17 && w.matches(':').count() == 5)
        .unwrap_or_else(|| panic!("no MAC in {out:?}"));
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// The `Tcp: InCsumErrors` counter of namespace `ns` (/proc/net/snmp).
#[track_caller]
pub fn tcp_in_csum_errors(ns: &str) -> u64 {
    let snmp = must("ip", &["netns", "exec", ns, "cat", "/proc/net/snmp"]);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "InCsumErrors")
        .expect("InCsumErrors in /proc/net/snmp");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// What [`check_frame`] found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP or UDP header.
    pub l4: usize,
    pub v6: bool,
    /// 6 (TCP) or 17 (UDP).
    pub proto: u8,
    /// Offset of the payload.
    pub payload: usize,
}

/// Checks an Ethernet frame carrying TCP or UDP over IPv4 or IPv6 (at most
/// one 802.1Q tag, no IPv4 options, no IPv6 extension headers): lengths,
/// the IPv4 header checksum, the TCP or UDP checksum. `Ok(None)` for a
/// frame that carries something else (ARP, ICMP, ...).
pub fn check_frame(f: &[u8]) -> Result<Option<Checked>, String> {
    let be16 = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    if f.len() < 14 {
        return Err(format!("{} bytes: no Ethernet header", f.len()));
    }
    let (l3, ethertype) = if be16(12) == 0x8100 {
        (18, be16(16))
    } else {
        (14, be16(12))
    };
    let (v6, l4, proto) = match ethertype {
        0x0800 => {
            if f.len() < l3 + 20 || f[l3] != 0x45 {
                return Err("not a plain 20-byte IPv4 header".into());
            }
            if usize::from(be16(l3 + 2)) != f.len() - l3 {
                return Err(format!(
                    "IPv4 total length {} but {} bytes",
                    be16(l3 + 2),
                    f.len() - l3
                ));
            }
            if reference_fold(&[&f[l3..l3 + 20]]) != 0xffff {
                return Err("bad IPv4 header checksum".into());
            }
            (false, l3 + 20, f[l3 + 9])
        }
        0x86dd => {
            if f.len() < l3 + 40 {
                return Err("short IPv6 header".into());
            }
            if usize::from(be16(l3 + 4)) != f.len() - l3 - 40 {
                return Err(format!(
                    "IPv6 payload length {} but {} bytes",
                    be16(l3 + 4),
                    f.len() - l3 - 40
                ));
            }
            (true, l3 + 40, f[l3 + 6])
        }
        _ => return Ok(None),
    };
    let l4_len = f.len() - l4;
    let payload = match proto {
        6 if l4_len >= 20 => l4 + usize::from(f[l4 + 12] >> 4) * 4,
        17 if l4_len >= 8 => {
            if usize::from(be16(l4 + 4)) != l4_len {
                return Err(format!("UDP length {} but {l4_len} bytes", be16(l4 + 4)));
            }
            if be16(l4 + 6) == 0 && v6 {
                return Err("UDP over IPv6 without a checksum".into());
            }
            l4 + 8
        }
        6 | 17 => return Err(format!("short L4 header ({l4_len} bytes)")),
        _ => return Ok(None),
    };
    let mut pseudo = if v6 {
        f[l3 + 8..l3 + 40].to_vec()
    } else {
        f[l3 + 12..l3 + 20].to_vec()
    };
    pseudo.extend_from_slice(&[0, 0, 0, proto]);
    pseudo.extend_from_slice(&(l4_len as u32).to_be_bytes()[..]);
    // The IPv4 pseudo-header's length is 16 bits; 32 bits of zeros and the
    // length add up the same.
    if reference_fold(&[&pseudo, &f[l4..]]) != 0xffff {
        return Err(format!(
            "bad {} checksum",
            if proto == 6 { "TCP" } else { "UDP" }
        ));
    }
    Ok(Some(Checked {
        l3,
        l4,
        v6,
        proto,
        payload,
    }))
}

/// A pcap file (Ethernet) being written.
pub struct Pcap {
    pub path: PathBuf,
    file: File,
}

impl Pcap {
    pub fn create(path: &Path) -> Pcap {
        let mut file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut header = Vec::new();
        header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&262_144u32.to_le_bytes());
        header.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        file.write_all(&header).unwrap();
        Pcap {
            path: path.to_owned(),
            file,
        }
    }

    pub fn write(&mut self, frame: &[u8]) {
        let mut record = Vec::with_capacity(16 + frame.len());
        record.extend_from_slice(&[0; 8]);
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        record.extend_from_slice(frame);
        self.file.write_all(&record).unwrap();
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads `pcap` with `tcpdump -vv`, which verifies IPv4 header, TCP and
/// UDP checksums; fails the test on any it finds bad. Returns how many
/// checksums tcpdump found correct (TCP "(correct)", UDP "udp sum ok").
#[track_caller]
pub fn tcpdump_checks(pcap: &Path) -> usize {
    let path = pcap.to_str().unwrap();
    let out = run("tcpdump", &["-nn", "-vv", "-r", path]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tcpdump -r {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad: Vec<&str> = said
        .lines()
        .filter(|l| {
            l.contains("incorrect") || l.contains("bad cksum") || l.contains("bad udp cksum")
        })
        .take(5)
        .collect();
    assert!(bad.is_empty(), "tcpdump found bad checksums: {bad:#?}");
    said.matches("(correct)").count() + said.matches("udp sum ok").count()
}

/// Bytes `0..len` of the test stream: each depends on its position, so
/// that a lost, repeated or misplaced byte shows.
pub fn stream_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 16) as u8
}

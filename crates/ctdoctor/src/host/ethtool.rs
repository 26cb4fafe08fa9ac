//! Driver statistics (`ethtool -S`) through the SIOCETHTOOL ioctl, as the
//! probe `probe:ethtool_stats`: ETHTOOL_GDRVINFO (driver name),
//! ETHTOOL_GSSET_INFO (number of ETH_SS_STATS strings), ETHTOOL_GSTRINGS,
//! ETHTOOL_GSTATS.
//!
//! The ioctl goes through an AF_INET datagram socket opened on the calling
//! thread, so interface names are looked up in that thread's netns (inside
//! `collect_live`: the target's). Interfaces without driver statistics
//! (lo, dummy) are listed under `unsupported`.
//!
//! To keep captures small, an interface with more than [`KEEP_ALL_MAX`]
//! counters keeps only those whose name says drop/miss/allowance/fifo/
//! error/discard; that always includes the AWS ENA allowance counters.
//!
//! Layouts (linux/ethtool.h), all native-endian:
//! ```text
//! ethtool_drvinfo   (196 B): u32 cmd | char driver[32] | ... | u32 n_stats @180
//! ethtool_sset_info (20 B):  u32 cmd | u32 reserved | u64 sset_mask | u32 data[]
//! ethtool_gstrings:          u32 cmd | u32 string_set | u32 len | char data[len][32]
//! ethtool_stats:             u32 cmd | u32 n_stats | u64 data[n_stats]
//! ```
//! The kernel writes as many strings/values as *it* counts at the time of
//! the call, so buffers get [`SLACK`] spare entries and a reply longer
//! than the buffer is refused.
//!
//! Not for: setting anything, or per-queue analysis.

use super::Unavailable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The probe key.
pub const PROBE: &str = "probe:ethtool_stats";
/// Interfaces with at most this many counters keep them all.
pub const KEEP_ALL_MAX: usize = 200;
/// Spare entries in GSTRINGS/GSTATS buffers.
const SLACK: usize = 64;
/// Refuse drivers that claim more counters than this.
const MAX_STATS: usize = 100_000;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// The probe's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ethtool {
    pub ifaces: BTreeMap<String, EthtoolIface>,
    /// Interfaces that have no driver statistics (or refused the ioctl).
    pub unsupported: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EthtoolIface {
    /// Driver name (`ena`, `virtio_net`, `veth`, ...).
    pub driver: String,
    /// How many counters the driver has.
    pub n_stats: u64,
    /// Whether only the drop/miss/allowance/... counters were kept.
    pub filtered: bool,
    pub stats: BTreeMap<String, u64>,
}

impl EthtoolIface {
    /// Counters whose name ends in `_allowance_exceeded` (AWS ENA).
    pub fn allowance_exceeded(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.stats
            .iter()
            .filter(|(k, _)| k.ends_with("_allowance_exceeded"))
    }
}

/// Whether a counter name is kept when an interface has many counters.
pub fn interesting(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["drop", "miss", "allowance", "fifo", "error", "discard"]
        .iter()
        .any(|w| n.contains(w))
}

/// Zip names with values, filtering when there are more than [`KEEP_ALL_MAX`].
pub fn build_stats(names: &[String], values: &[u64]) -> (BTreeMap<String, u64>, bool) {
    let filtered = names.len() > KEEP_ALL_MAX;
    let m = names
        .iter()
        .zip(values)
        .filter(|(n, _)| !filtered || interesting(n))
        .map(|(n, v)| (n.clone(), *v))
        .collect();
    (m, filtered)
}

/// Split ETHTOOL_GSTRINGS data into `n` names (NUL-terminated, 32 bytes each).
pub fn parse_strings(data: &[u8], n: usize) -> Vec<String> {
    data.chunks_exact(ETH_GSTRING_LEN)
        .take(n)
        .map(cstr)
        .collect()
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

struct Sock(libc::c_int);
impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

fn ioctl(sock: &Sock, iface: &str, buf: *mut libc::c_void) -> std::io::Result<()> {
    let mut ifr = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: buf,
        _pad: [0; 16],
    };
    let b = iface.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    ifr.name[..b.len()].copy_from_slice(b);
    // SAFETY: ifr is a valid ifreq whose data points at a buffer the
    // caller sized for the command (with slack, see module docs).
    let rc = unsafe { libc::ioctl(sock.0, SIOCETHTOOL as _, &mut ifr as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A u64-aligned buffer of at least `bytes` bytes.
fn aligned(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes.div_ceil(8)]
}

fn as_bytes(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding; any byte pattern is valid for u8.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}

/// Driver statistics of one interface.
fn one(sock: &Sock, iface: &str) -> std::io::Result<EthtoolIface> {
    // Driver name and (fallback) n_stats.
    let mut drv = aligned(196);
    as_bytes(&mut drv)[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    ioctl(sock, iface, drv.as_mut_ptr() as *mut libc::c_void)?;
    let db = as_bytes(&mut drv);
    let driver = cstr(&db[4..36]);
    let mut n = u32_at(db, 180) as usize;

    let mut sset = aligned(24);
    {
        let b = as_bytes(&mut sset);
        b[..4].copy_from_slice(&ETHTOOL_GSSET_INFO.to_ne_bytes());
        b[8..16].copy_from_slice(&(1u64 << ETH_SS_STATS).to_ne_bytes());
    }
    if ioctl(sock, iface, sset.as_mut_ptr() as *mut libc::c_void).is_ok() {
        let b = as_bytes(&mut sset);
        let mask = u64::from_ne_bytes(b[8..16].try_into().expect("8 bytes"));
        n = if mask & (1 << ETH_SS_STATS) != 0 {
            u32_at(b, 16) as usize
        } else {
            0
        };
    }
    if n == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    if n > MAX_STATS {
        return Err(std::io::Error::other(format!("{n} counters")));
    }
    let cap = n + SLACK;

    let mut strings = aligned(12 + cap * ETH_GSTRING_LEN);
    {
        let b = as_bytes(&mut strings);
        b[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        b[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
        b[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
    }
    ioctl(sock, iface, strings.as_mut_ptr() as *mut libc::c_void)?;
    let sb = as_bytes(&mut strings);
    let got_names = u32_at(sb, 8) as usize;
    if got_names > cap {
        return Err(std::io::Error::other("string count grew past the buffer"));
    }
    let names = parse_strings(&sb[12..], got_names);

    let mut stats = aligned(8 + cap * 8);
    {
        let b = as_bytes(&mut stats);
        b[..4].copy_from_slice(&ETHTOOL_GSTATS.to_ne_bytes());
        b[4..8].copy_from_slice(&(n as u32).to_ne_bytes());
    }
    ioctl(sock, iface, stats.as_mut_ptr() as *mut libc::c_void)?;
    let got_stats = u32_at(as_bytes(&mut stats), 4) as usize;
    if got_stats > cap || got_stats != names.len() {
        return Err(std::io::Error::other("counter count changed between calls"));
    }
    let values: Vec<u64> = stats[1..1 + got_stats].to_vec();
    let (stats, filtered) = build_stats(&names, &values);
    Ok(EthtoolIface {
        driver,
        n_stats: got_stats as u64,
        filtered,
        stats,
    })
}

/// Driver statistics of `ifaces`, read in the calling thread's netns.
pub fn read_live(ifaces: &[String]) -> Result<Ethtool, Unavailable> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Unavailable::from_io(
            "ethtool socket",
            &std::io::Error::last_os_error(),
        ));
    }
    let sock = Sock(fd);
    let mut out = Ethtool::default();
    for i in ifaces {
        match one(&sock, i) {
            Ok(s) => {
                out.ifaces.insert(i.clone(), s);
            }
            Err(_) => out.unsupported.push(i.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_and_filter() {
        let mut data = vec![0u8; 3 * 32];
        data[..8].copy_from_slice(b"rx_drops");
        data[32..32 + 28].copy_from_slice(b"conntrack_allowance_exceeded");
        data[64..64 + 8].copy_from_slice(b"tx_kicks");
        let names = parse_strings(&data, 3);
        assert_eq!(
            names,
            ["rx_drops", "conntrack_allowance_exceeded", "tx_kicks"]
        );
        assert_eq!(parse_strings(&data, 10).len(), 3);
        let (m, f) = build_stats(&names, &[1, 2, 3]);
        assert!(!f);
        assert_eq!(m.len(), 3);
        // Many counters: keep only the interesting ones.
        let many: Vec<String> = (0..250)
            .map(|i| format!("queue_{i}_packets"))
            .chain([
                "pps_allowance_exceeded".to_string(),
                "rx_fifo_errors".into(),
                "bw_in_allowance_exceeded".into(),
            ])
            .collect();
        let vals: Vec<u64> = (0..many.len() as u64).collect();
        let (m, f) = build_stats(&many, &vals);
        assert!(f);
        assert_eq!(m.len(), 3);
        assert_eq!(m["pps_allowance_exceeded"], 250);
        assert!(interesting("rx_missed_errors") && interesting("rx_discards_phy"));
        assert!(!interesting("tx_kicks"));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400), n in 0usize..20) {
            let names = parse_strings(&b, n);
            let _ = build_stats(&names, &[1, 2]);
        }
    }
}

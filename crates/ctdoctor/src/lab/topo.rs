//! The lab's network: three namespaces, client — gateway — backend, joined
//! by two veth pairs, with addresses only inside them, and connection
//! tracking on in the gateway (an nft `ct state` rule in input and output,
//! as a stateful firewall has). Every namespace is a guard: dropped (error,
//! panic, the lab's Ctrl-C handler), it is deleted.
//!
//! ```text
//!  client                gateway                     backend
//!  ctdl-c0 10.203.1.2 ── ctdl-g0 10.203.1.1
//!                        ctdl-g1 10.203.2.1 ──────── ctdl-b0 10.203.2.2
//! ```
//!
//! Not for: the processes that run in them (proxy, backend, load) or the
//! measurements.

use anyhow::{bail, Context, Result};
use netns::owned::Netns;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Addresses of the lab's network.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 1, 2);
pub const GATEWAY_FRONT: Ipv4Addr = Ipv4Addr::new(10, 203, 1, 1);
pub const GATEWAY_BACK: Ipv4Addr = Ipv4Addr::new(10, 203, 2, 1);
pub const BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 2, 2);
/// The proxy listens here (in the gateway); the backend serves here.
pub const PROXY_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;

/// The proxy's address, as the client connects to it.
pub fn proxy_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(GATEWAY_FRONT, PROXY_PORT))
}

/// The backend's address, as the proxy connects to it.
pub fn backend_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(BACKEND_ADDR, BACKEND_PORT))
}

/// The namespaces' names for a lab prefix.
pub fn names(prefix: &str) -> [String; 3] {
    [
        format!("{prefix}-client"),
        format!("{prefix}-gw"),
        format!("{prefix}-backend"),
    ]
}

/// The ruleset that turns tracking on in the gateway: every packet in
/// and out passes a `ct state` match (accepting; the policy accepts too).
pub const GATEWAY_TRACKING: &str = "table inet ctdlab { \
    chain in { type filter hook input priority 0; ct state established,related accept; }; \
    chain out { type filter hook output priority 0; ct state new,established accept; }; }";

/// The three namespaces, removed when dropped.
pub struct Topology {
    pub client: Netns,
    pub gateway: Netns,
    pub backend: Netns,
}

/// Whether any of the lab's namespaces exists.
pub fn existing(prefix: &str) -> Vec<String> {
    names(prefix)
        .into_iter()
        .filter(|n| std::path::Path::new("/run/netns").join(n).exists())
        .collect()
}

/// Remove the lab's namespaces left by an earlier run (`--force`, or the
/// teardown of `--keep`): processes inside are killed first (they keep a
/// namespace alive), then the namespaces are deleted.
/// How the lab's temporary directories (nginx's) begin, before the
/// gateway's name.
pub const TEMP_PREFIX: &str = "ctdoctor-lab-";

/// The lab's temporary directories under `prefix` a killed run left:
/// real directories of ours in the temp dir — nginx's, named for this
/// lab's gateway, and the fix's journal root (its changes were runtime
/// values in the lab's namespaces, gone with them).
pub fn leftover_dirs(prefix: &str) -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let stems = [
        format!("{TEMP_PREFIX}{}-nginx-", names(prefix)[1]),
        format!("{TEMP_PREFIX}{prefix}-fix-"),
    ];
    let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    // SAFETY: geteuid has no failure mode.
    let me = unsafe { libc::geteuid() };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            stems.iter().any(|s| n.starts_with(s.as_str()))
        })
        .filter(|e| std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir() && m.uid() == me))
        .map(|e| e.path())
        .collect()
}

pub fn teardown(prefix: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for n in existing(prefix) {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &n])
            .output()
            .with_context(|| format!("ip netns pids {n}"))?;
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            if let Ok(p) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a pid `ip netns pids` named.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
        }
        let out = std::process::Command::new("ip")
            .args(["netns", "del", &n])
            .output()
            .with_context(|| format!("ip netns del {n}"))?;
        if !out.status.success() {
            bail!(
                "ip netns del {n}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        removed.push(n);
    }
    // After the processes are gone: nginx's directory of a killed run.
    for d in leftover_dirs(prefix) {
        if std::fs::remove_dir_all(&d).is_ok() {
            removed.push(d.display().to_string());
        }
    }
    Ok(removed)
}

impl Topology {
    /// Build the network under `prefix` (names `PREFIX-client`, `-gw`,
    /// `-backend`). Fails — with nothing left behind — when a name is taken.
    pub fn create(prefix: &str) -> Result<Topology> {
        let [c, g, b] = names(prefix);
        let client = Netns::add(&c).with_context(|| format!("creating namespace {c}"))?;
        let gateway = Netns::add(&g).with_context(|| format!("creating namespace {g}"))?;
        let backend = Netns::add(&b).with_context(|| format!("creating namespace {b}"))?;
        let t = Topology {
            client,
            gateway,
            backend,
        };
        t.wire().context("wiring the lab's namespaces")?;
        Ok(t)
    }

    fn wire(&self) -> Result<()> {
        let (c, b) = (self.client.name(), self.backend.name());
        let ip = |ns: &Netns, args: &[&str]| -> Result<()> {
            ns.exec("ip", args)
                .map(drop)
                .with_context(|| format!("ip {} in {}", args.join(" "), ns.name()))
        };
        for ns in [&self.client, &self.gateway, &self.backend] {
            ip(ns, &["link", "set", "lo", "up"])?;
        }
        ip(
            &self.gateway,
            &[
                "link", "add", "ctdl-g0", "type", "veth", "peer", "name", "ctdl-c0", "netns", c,
            ],
        )?;
        ip(
            &self.gateway,
            &[
                "link", "add", "ctdl-g1", "type", "veth", "peer", "name", "ctdl-b0", "netns", b,
            ],
        )?;
        let front = format!("{GATEWAY_FRONT}/24");
        let back = format!("{GATEWAY_BACK}/24");
        let cl = format!("{CLIENT_ADDR}/24");
        let be = format!("{BACKEND_ADDR}/24");
        ip(&self.gateway, &["addr", "add", &front, "dev", "ctdl-g0"])?;
        ip(&self.gateway, &["addr", "add", &back, "dev", "ctdl-g1"])?;
        ip(&self.gateway, &["link", "set", "ctdl-g0", "up"])?;
        ip(&self.gateway, &["link", "set", "ctdl-g1", "up"])?;
        ip(&self.client, &["addr", "add", &cl, "dev", "ctdl-c0"])?;
        ip(&self.client, &["link", "set", "ctdl-c0", "up"])?;
        ip(&self.backend, &["addr", "add", &be, "dev", "ctdl-b0"])?;
        ip(&self.backend, &["link", "set", "ctdl-b0", "up"])?;
        // Each side's way out is the gateway. The gateway proxies; it
        // routes (ip_forward) only when a scenario's fill asks (lab/scenario.rs).
        let gw_front = GATEWAY_FRONT.to_string();
        let gw_back = GATEWAY_BACK.to_string();
        ip(&self.client, &["route", "add", "default", "via", &gw_front])?;
        ip(&self.backend, &["route", "add", "default", "via", &gw_back])?;
        self.gateway
            .nft(GATEWAY_TRACKING)
            .context("turning tracking on in the gateway (nft)")?;
        Ok(())
    }

    /// Keep the namespaces after the lab ends (`--keep`): their names.
    pub fn keep(self) -> [String; 3] {
        [self.client.keep(), self.gateway.keep(), self.backend.keep()]
    }
}

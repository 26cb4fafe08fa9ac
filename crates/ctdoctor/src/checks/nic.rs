//! Interface rules: `nic.drops` (kernel per-interface drop counters from
//! /proc/net/dev) and `cloud.allowance` (AWS ENA `*_allowance_exceeded`
//! driver counters: limits of the instance, not of Linux).
//!
//! Not for: reading (host::nic, host::ethtool).

use super::{Finding, Severity};
use crate::counters::{per_sec, rise};
use crate::snapshot::{Nics, Snapshot};
use crate::util::percent as pct;

pub const DROPS: &str = "nic.drops";
pub const ALLOWANCE: &str = "cloud.allowance";
use serde_json::json;
use std::collections::BTreeMap;

/// `nic.drops` without a sample: drops / packets since boot at or above
/// this share (percent) is a warning; any drop at all is info.
pub const DROPS_WARN_PCT_SINCE_BOOT: f64 = 0.1;
/// With `--sample`: drops rising is a warning; at or above this share of
/// the packets moved during the sample it is critical.
pub const DROPS_CRIT_PCT_SAMPLE: f64 = 1.0;

pub fn run(snap: &Snapshot) -> Vec<Finding> {
    let earlier = snap.earlier.as_ref().and_then(|e| e.nic.as_ref().ok());
    let secs = snap.interval_secs();
    match &snap.now.nic {
        Ok(n) => vec![drops(n, earlier, secs), allowance(n, earlier, secs)],
        Err(u) => vec![
            Finding::unavailable(DROPS, u),
            Finding::unavailable(ALLOWANCE, u),
        ],
    }
}

fn drops(n: &Nics, earlier: Option<&Nics>, secs: Option<f64>) -> Finding {
    const ID: &str = DROPS;
    let (per_iface, worst_boot, worst_sample) = interface_drops(n, earlier, secs);
    let driver = driver_drops(n);
    let mut f =
        Finding::new(ID, Severity::Ok, "").with("interfaces", serde_json::Value::Object(per_iface));
    if !driver.is_empty() {
        f = f.with("driver_drop_counters", json!(driver));
    }
    let sampled = earlier.is_some();
    let (sev, title) = drops_title(n, worst_boot, worst_sample, sampled);
    f.severity = sev;
    f.title = title;
    f = f.why(
        "Interface drop counters (/proc/net/dev: receive drop = rx_dropped + rx_missed_errors, \
         fifo = ring overruns; transmit drop = qdisc/driver drops) count packets lost before or \
         after the stack. rx_dropped also counts frames no protocol wanted, so a small steady \
         number can be harmless; a rise during a sample that matches the loss clients see is not.",
    );
    if sev >= Severity::Warning {
        f = f.note(
            "Look at the driver counters: `ethtool -S IFACE | grep -Ei 'drop|miss|fifo|discard'`\n\
             Ring overruns (fifo/missed): `ethtool -g IFACE`, then `ethtool -G IFACE rx 4096`\n\
             Receive spread over CPUs: `ethtool -l IFACE`, `ethtool -L IFACE combined N`\n\
             Transmit drops: check the qdisc with `tc -s qdisc show dev IFACE`",
        );
    }
    f
}

/// The worst interface: (iface, drops, packets, drops' percent).
type Worst<'a> = Option<(&'a str, u64, u64, f64)>;

/// Each interface's counters (and rises since `earlier`) as JSON, and the
/// worst interface since boot and during the sample.
fn interface_drops<'a>(
    n: &'a Nics,
    earlier: Option<&Nics>,
    secs: Option<f64>,
) -> (
    serde_json::Map<String, serde_json::Value>,
    Worst<'a>,
    Worst<'a>,
) {
    let mut per_iface = serde_json::Map::new();
    let mut worst_boot: Worst = None;
    let mut worst_sample: Worst = None;
    for (name, c) in &n.dev {
        let mut e = json!({
            "rx_drop": c.rx_drop, "rx_fifo": c.rx_fifo,
            "tx_drop": c.tx_drop, "tx_fifo": c.tx_fifo,
            "rx_packets": c.rx_packets, "tx_packets": c.tx_packets,
        });
        let d = c.drops();
        let p = pct(d, c.packets().saturating_add(d));
        if d > 0 && worse_than(&worst_boot, p, d) {
            worst_boot = Some((name, d, c.packets(), p));
        }
        if let Some(ec) = earlier.and_then(|e| e.dev.get(name)) {
            let dd = rise(d, Some(ec.drops())).unwrap_or(0);
            let dp = rise(c.packets(), Some(ec.packets())).unwrap_or(0);
            let sp = pct(dd, dp.saturating_add(dd));
            e["drops_rise"] = json!(dd);
            e["drops_per_sec"] = json!(per_sec(dd, secs));
            if dd > 0 && worse_than(&worst_sample, sp, dd) {
                worst_sample = Some((name, dd, dp, sp));
            }
        }
        if let Some(ls) = n.link_stats.as_ref().ok().and_then(|l| l.get(name)) {
            for k in [
                "rx_dropped",
                "rx_missed_errors",
                "rx_over_errors",
                "rx_nohandler",
                "tx_dropped",
            ] {
                if let Some(v) = ls.get(k) {
                    e[k] = json!(v);
                }
            }
        }
        if d > 0 || c.rx_errs > 0 || c.tx_errs > 0 {
            e["rx_errs"] = json!(c.rx_errs);
            e["tx_errs"] = json!(c.tx_errs);
        }
        per_iface.insert(name.clone(), e);
    }
    (per_iface, worst_boot, worst_sample)
}

/// Driver drop counters that are not zero, per interface (not judged:
/// names and meanings vary by driver).
fn driver_drops(n: &Nics) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut driver: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    if let Ok(et) = &n.ethtool {
        for (iface, s) in &et.ifaces {
            for (k, v) in &s.stats {
                let lk = k.to_ascii_lowercase();
                if *v > 0
                    && !lk.contains("allowance")
                    && ["drop", "miss", "discard", "fifo"]
                        .iter()
                        .any(|w| lk.contains(w))
                {
                    driver
                        .entry(iface.clone())
                        .or_default()
                        .insert(k.clone(), *v);
                }
            }
        }
    }
    driver
}

/// Severity and title: drops during the sample, since boot, or none.
fn drops_title(
    n: &Nics,
    worst_boot: Worst,
    worst_sample: Worst,
    sampled: bool,
) -> (Severity, String) {
    if let Some((i, d, p, sp)) = worst_sample {
        let sev = if sp >= DROPS_CRIT_PCT_SAMPLE {
            Severity::Critical
        } else {
            Severity::Warning
        };
        (
            sev,
            format!("{i}: {d} packets dropped during the sample ({sp}% of {p} packets)"),
        )
    } else if let Some((i, d, p, bp)) = worst_boot {
        if sampled {
            (
                Severity::Info,
                format!("{i}: {d} drops since boot ({bp}% of {p} packets), none during the sample"),
            )
        } else if bp >= DROPS_WARN_PCT_SINCE_BOOT {
            (
                Severity::Warning,
                format!("{i}: {d} drops since boot ({bp}% of {p} packets); run with --sample to see if it is happening now"),
            )
        } else {
            (
                Severity::Info,
                format!("{i}: {d} drops since boot ({bp}% of {p} packets)"),
            )
        }
    } else {
        (
            Severity::Ok,
            format!(
                "no drops on {}",
                crate::util::plural(n.dev.len() as u64, "interface")
            ),
        )
    }
}

/// Whether (share `p`, drops `d`) is worse than the worst so far.
fn worse_than(worst: &Option<(&str, u64, u64, f64)>, p: f64, d: u64) -> bool {
    match worst {
        None => true,
        Some((_, wd, _, wp)) => p > *wp || (p == *wp && d > *wd),
    }
}

fn allowance(n: &Nics, earlier: Option<&Nics>, secs: Option<f64>) -> Finding {
    const ID: &str = ALLOWANCE;
    let et = match &n.ethtool {
        Ok(e) => e,
        Err(u) => return Finding::unavailable(ID, u),
    };
    let mut counters = serde_json::Map::new();
    let mut exceeded: Vec<String> = Vec::new();
    let mut rising: Vec<String> = Vec::new();
    let mut available = serde_json::Map::new();
    for (iface, s) in &et.ifaces {
        let prev = earlier
            .and_then(|e| e.ethtool.as_ref().ok())
            .and_then(|e| e.ifaces.get(iface));
        for (k, v) in s.allowance_exceeded() {
            let mut e = json!({ "value": v });
            if *v > 0 {
                exceeded.push(format!("{iface} {k} {v}"));
            }
            if let Some(r) = rise(*v, prev.and_then(|p| p.stats.get(k).copied())) {
                e["rise"] = json!(r);
                e["per_sec"] = json!(per_sec(r, secs));
                if r > 0 {
                    rising.push(format!("{iface} {k} +{r}"));
                }
            }
            counters.insert(format!("{iface}.{k}"), e);
        }
        if let Some(a) = s.stats.get("conntrack_allowance_available") {
            available.insert(iface.clone(), json!(a));
        }
    }
    let mut f = Finding::new(ID, Severity::Ok, "");
    if counters.is_empty() {
        f.title = format!(
            "no interface reports cloud allowance counters (not an AWS ENA NIC; {} with driver statistics)",
            et.ifaces.len()
        );
        return f.with("interfaces_with_driver_stats", et.ifaces.len() as u64);
    }
    f = f.with("counters", serde_json::Value::Object(counters));
    if !available.is_empty() {
        f = f.with(
            "conntrack_allowance_available",
            serde_json::Value::Object(available),
        );
    }
    let (sev, title) = if !rising.is_empty() {
        (
            Severity::Critical,
            format!("NIC allowance exceeded now: {}", rising.join(", ")),
        )
    } else if !exceeded.is_empty() {
        (
            Severity::Warning,
            format!(
                "NIC allowance exceeded since the driver reset: {}{}",
                exceeded.join(", "),
                if earlier.is_some() {
                    "; not during the sample"
                } else {
                    ""
                }
            ),
        )
    } else {
        (
            Severity::Ok,
            "no cloud NIC allowance exceeded (all *_allowance_exceeded are 0)".to_string(),
        )
    };
    f.severity = sev;
    f.title = title;
    f = f.why(
        "AWS ENA interfaces enforce per-instance allowances (packets per second, bandwidth in and \
         out, tracked connections, link-local traffic). Packets over an allowance are dropped or \
         queued by the hypervisor, invisible to Linux counters except these. The cloud's \
         connection tracking is separate from Linux conntrack: no sysctl raises it.",
    );
    if sev == Severity::Ok {
        return f;
    }
    f.note(
        "No sysctl raises it; the allowance belongs to the instance type:\n\
         - move to a bigger (or network-optimised) instance type,\n\
         - spread the load over more instances/ENIs,\n\
         - reduce connection churn (keepalive and connection reuse to clients and upstreams);\n\
           for conntrack_allowance_exceeded also: flows allowed by security-group rules open to \
         0.0.0.0/0 in both directions are not tracked, and shorter idle timeouts free entries.\n\
         Watch it: `ethtool -S IFACE | grep allowance` (conntrack_allowance_available shows headroom).",
    )
}

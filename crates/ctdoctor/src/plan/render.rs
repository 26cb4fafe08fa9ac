//! A [`Plan`] as text (a short table and the reasoning in words, changes
//! rendered by `change::render`) and as JSON (`schema_version` 1; fields in
//! docs/plan.md).
//!
//! Pure. Not for: computing anything (size, whatif).

use super::whatif::WhatIf;
use super::Plan;
use crate::advice::change::{self, Context};
use crate::advice::size::{Alternative, Basis, DefaultSource, DemandSource, SizePlan};
use crate::advice::sizing::{self, Size};
use crate::util::{bytes, thousands};
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// The JSON schema version of `plan --json`.
pub const SCHEMA_VERSION: u32 = 1;

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn size_json(s: &Size, p: &SizePlan) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("max".into(), s.max.into());
    m.insert("buckets".into(), s.buckets.into());
    m.insert("full_table_bytes".into(), s.full_table_bytes.into());
    m.insert("ram_pct".into(), round2(s.ram_share * 100.0).into());
    m.insert(
        "mean_chain_now".into(),
        round2(p.chain_now(s.buckets)).into(),
    );
    m.insert(
        "mean_chain_at_max".into(),
        round2(s.mean_chain_at_max).into(),
    );
    m
}

fn demand_json(p: &SizePlan) -> Value {
    let d = &p.demand;
    let mut v = json!({
        "entries": d.entries,
        "source": match d.source {
            DemandSource::Count => "count",
            DemandSource::Peak => "peak",
            DemandSource::Rate(_) => "rate",
            DemandSource::Dump => "dump",
        },
        "capped": d.capped,
        "count": d.count,
        "usage_pct": round2(d.usage * 100.0),
        "drops": d.drops,
        "early_drops": d.early_drops,
    });
    if let DemandSource::Rate(r) = d.source {
        v["rate"] = json!({
            "per_sec": r.per_sec,
            "residency_secs": round2(r.residency_secs),
            "time_wait_secs": r.time_wait_secs,
            "other_states_secs": r.other_states_secs.map(round2),
            "other_protocols": r.other_protocols,
        });
    }
    v
}

fn what_if_json(w: &WhatIf, source: &str) -> Value {
    let mut timeouts = Map::new();
    for t in &w.timeouts {
        timeouts.insert(t.key.into(), json!({"from": t.from, "to": t.to}));
    }
    let mut states = Map::new();
    for c in &w.classes {
        states.insert(
            c.class.name().into(),
            json!({
                "now": c.now,
                "predicted": c.predicted,
                "unknown_age": c.unknown_age,
                "at_least": c.at_least,
                "evictable_now": c.evictable_now,
                "timeout": {"from": c.from, "to": c.to},
            }),
        );
    }
    json!({
        "source": source,
        "timeouts": timeouts,
        "states": states,
        "total": {"now": w.total_now, "predicted": w.total_predicted, "at_least": w.at_least},
        "converges_within_s": w.converges_within_s,
        "evictable_now": w.evictable_now,
        "changes": w.changes,
    })
}

/// The plan as JSON.
pub fn to_json(plan: &Plan) -> Value {
    let p = &plan.size;
    let alternatives: Vec<Value> = plan
        .alternatives
        .iter()
        .map(|a| {
            let mut m = Map::new();
            m.insert("name".into(), a.name.into());
            m.extend(size_json(&a.size, p));
            m.insert("seed_formula_bytes".into(), a.seed_formula_bytes.into());
            m.insert("basis".into(), a.basis.clone().into());
            Value::Object(m)
        })
        .collect();
    let mut recommended = size_json(&p.recommended, p);
    recommended.insert(
        "basis".into(),
        match p.basis {
            Basis::Demand => "demand",
            Basis::KeptCurrent => "kept_current",
            Basis::LoweredToBudget => "lowered_to_budget",
        }
        .into(),
    );
    let what_if = match &plan.what_if {
        None => Value::Null,
        Some(w) => match &w.result {
            Ok(r) => what_if_json(r, &w.source),
            Err(e) => json!({"source": w.source, "error": e}),
        },
    };
    json!({
        "schema_version": SCHEMA_VERSION,
        "netns": plan.netns,
        "kernel_release": plan.kernel_release,
        "mem_total_bytes": p.ram,
        "cpus": plan.cpus,
        "demand": demand_json(p),
        "sizing": {
            "recommended": recommended,
            "alternatives": alternatives,
            "headroom": p.inputs.headroom,
            "mem_budget_pct": round2(p.inputs.mem_budget * 100.0),
            "budget_max": (p.budget_max != u64::MAX).then_some(p.budget_max),
            "capped_by_memory": p.capped_by_memory,
            "memory_model": {
                "objsize": p.objsize,
                "objsize_source": if p.objsize_measured { "measured" } else { "assumed" },
                "extension_factor": sizing::EXT_FACTOR,
                "bucket_bytes": sizing::BUCKET_BYTES,
            },
            "hash_entries": p.hash_entries,
            "changes": plan.changes,
        },
        "what_if": what_if,
    })
}

fn table(rows: &[Alternative], p: &SizePlan) -> String {
    let head = [
        "",
        "max",
        "buckets",
        "full table",
        "of RAM",
        "chain now",
        "chain full",
        "seed formula",
    ];
    let mut cells: Vec<[String; 8]> = vec![head.map(str::to_string)];
    for a in rows {
        let s = &a.size;
        cells.push([
            a.name.to_string(),
            thousands(s.max),
            thousands(s.buckets),
            bytes(s.full_table_bytes),
            if p.ram > 0 {
                pct(s.ram_share)
            } else {
                "?".into()
            },
            format!("{:.2}", p.chain_now(s.buckets)),
            format!("{:.2}", s.mean_chain_at_max),
            bytes(a.seed_formula_bytes),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &cells {
        let mut line = format!("  {:<w$}", r[0], w = widths[0]);
        for i in 1..8 {
            let _ = write!(line, "  {:>w$}", r[i], w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn demand_words(p: &SizePlan) -> String {
    let d = &p.demand;
    let base = match d.source {
        DemandSource::Count => format!("{} entries, the count now", thousands(d.entries)),
        DemandSource::Peak => format!("a peak of {} entries (--peak)", thousands(d.entries)),
        DemandSource::Dump => format!(
            "{} entries, as many as the dump holds (--file; the count now is {})",
            thousands(d.entries),
            thousands(d.count)
        ),
        DemandSource::Rate(r) => {
            let mut s = format!(
                "{} entries: {} new connections/s × {:.0} s each in the table (TIME_WAIT's {} s",
                thousands(d.entries),
                sizing_num(r.per_sec),
                r.residency_secs,
                r.time_wait_secs
            );
            match r.other_states_secs {
                Some(o) => {
                    let _ = write!(s, " + {o:.1} s in the other TCP states at today's mix)");
                }
                None => s.push_str("; the other states not counted: no table dump)"),
            }
            if r.other_protocols > 0 {
                let _ = write!(
                    s,
                    ", plus {} entries of other protocols as they are",
                    thousands(r.other_protocols)
                );
            }
            s
        }
    };
    if d.capped {
        let mut why = Vec::new();
        if d.usage >= crate::advice::size::CAPPED_USAGE {
            why.push(format!("the count is {} of max", pct(d.usage)));
        }
        if d.source == DemandSource::Dump && p.current_max > 0 {
            let share = d.entries as f64 / p.current_max as f64;
            if share >= crate::advice::size::CAPPED_USAGE {
                why.push(format!("the dump holds {} of max", pct(share)));
            }
        }
        if d.drops > 0 {
            why.push(format!("{} packets dropped", thousands(d.drops)));
        }
        if d.early_drops > 0 {
            why.push(format!(
                "{} entries early-dropped",
                thousands(d.early_drops)
            ));
        }
        format!(
            "{base} — but the table is full ({}; counters since boot): the real demand is \
             unknown and at least the max {}, so this plans from the max; plan again after \
             raising it, or give --peak",
            why.join(", "),
            thousands(p.current_max)
        )
    } else {
        base
    }
}

fn sizing_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        thousands(x as u64)
    } else {
        format!("{x:.1}")
    }
}

fn reasoning(plan: &Plan) -> Vec<String> {
    let p = &plan.size;
    let rec = &p.recommended;
    let h = crate::advice::size::fmt_factor(p.inputs.headroom);
    let mut v = vec![format!("Demand: {}.", demand_words(p))];
    let doubled = (p.base() as f64 * p.inputs.headroom).ceil() as u64;
    let mut max_why = format!("{h} × {} = {}", thousands(p.base()), thousands(doubled));
    if p.floor > doubled {
        let src = match p.kernel_default.map(|k| k.source) {
            Some(DefaultSource::BootLog) => "as its boot log says",
            Some(DefaultSource::BootHashsize(_)) => "as the boot hashsize gives",
            _ => "by the mainline rule",
        };
        let _ = write!(
            max_why,
            " is below this kernel's default {} ({src}): never less than the kernel gives",
            thousands(p.floor)
        );
    }
    if p.capped_by_memory {
        let _ = write!(
            max_why,
            "; a full table within {} of RAM holds at most {}: capped there, so make entries \
             leave sooner (--what-if) or track less (NOTRACK)",
            crate::advice::size::fmt_pct(p.inputs.mem_budget),
            thousands(p.budget_max)
        );
    }
    let what = match p.basis {
        Basis::Demand if p.current_max == rec.max => "keep".to_string(),
        Basis::Demand if p.current_max == 0 => "set one (no limit now)".to_string(),
        Basis::Demand if rec.max > p.current_max => "raise".to_string(),
        Basis::Demand => "set".to_string(),
        Basis::KeptCurrent => format!(
            "the demand needs {}; the current {} is larger and a full table at it fits the \
             budget: keep it (a lower max frees no memory until the table fills)",
            thousands(p.computed_max),
            thousands(p.current_max)
        ),
        Basis::LoweredToBudget => format!(
            "the demand needs {}; a full table at the current {} would take more than {} of \
             RAM: lower it to what fits",
            thousands(p.computed_max),
            thousands(p.current_max),
            crate::advice::size::fmt_pct(p.inputs.mem_budget)
        ),
    };
    v.push(format!("Max {}: {max_why}; {what}.", thousands(rec.max)));
    v.push(format!(
        "Buckets {}: each entry sits in two chains (both directions), so buckets = max gives \
         a full table a mean chain of {:.2}; rounded up to whole pages of 512 heads as the \
         kernel does{}, never fewer than now.",
        thousands(rec.buckets),
        rec.mean_chain_at_max,
        if p.hash_entries > rec.max {
            format!(
                ", and room for the {} entries every netns holds in the one shared hash",
                thousands(p.hash_entries)
            )
        } else {
            String::new()
        }
    ));
    let obj = if p.objsize_measured {
        format!("objsize {} B measured in /proc/slabinfo", p.objsize)
    } else {
        format!(
            "objsize {} B assumed (measured on 6.18 x86_64; /proc/slabinfo not read)",
            p.objsize
        )
    };
    v.push(format!(
        "Memory of a full table = max × {obj} × {} for extensions (nat, acct, timestamp are \
         allocated beside the object; ~384 B/entry all in at 1M entries on 6.18) + buckets × {} B \
         (one pointer each), unswappable kernel memory; entries cost it only while they exist.",
        sizing::EXT_FACTOR,
        sizing::BUCKET_BYTES
    ));
    if let Some(seed) = plan.alternatives.iter().find(|a| a.name == "recommended") {
        v.push(format!(
            "The seed's formula (max × 352 B + buckets × 16 B) says {} for the recommended \
             size, ours {}: its 352 B is an older kernel's object without extensions and its \
             16 B bucket a list_head (today one 8-byte hlist_nulls_head).",
            bytes(seed.seed_formula_bytes),
            bytes(seed.size.full_table_bytes)
        ));
    }
    v.push(
        "Where: nf_conntrack_max and the bucket count are global — set them on the host (init \
         netns; a child netns sees them read-only since 5.13, 5.10.38 and 5.4.120), max is compared with each netns's own count. \
         Buckets: /sys/module/nf_conntrack/parameters/hashsize or nf_conntrack_buckets (a live \
         resize). At boot: sysctl.d for max; modprobe.d `options nf_conntrack hashsize=N` for a \
         module, the kernel command line `nf_conntrack.hashsize=N` when built in — and a boot \
         hashsize makes the default max 8 × hashsize, so keep max in sysctl.d."
            .to_string(),
    );
    v
}

fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + w.chars().count() > width {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn what_if_text(out: &mut String, w: &WhatIf, source: &str, ctx: &Context) {
    let what: Vec<String> = w
        .timeouts
        .iter()
        .map(|t| {
            format!(
                "{} {} → {} s",
                crate::knobs::short_name(t.key),
                t.from,
                t.to
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nWhat-if {} (from one dump of {} entries, {source}):",
        what.join(", "),
        thousands(w.total_now)
    );
    let mut rows = vec![[
        "".to_string(),
        "now".to_string(),
        "predicted".into(),
        "unknown age".into(),
    ]];
    for c in &w.classes {
        rows.push([
            c.class.name().to_string(),
            thousands(c.now),
            format!(
                "{}{}",
                if c.at_least { "≥ " } else { "" },
                thousands(c.predicted)
            ),
            thousands(c.unknown_age),
        ]);
    }
    rows.push([
        "total".into(),
        thousands(w.total_now),
        format!(
            "{}{}",
            if w.at_least { "≥ " } else { "" },
            thousands(w.total_predicted)
        ),
        String::new(),
    ]);
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = format!("  {:<w$}", r[0], w = widths[0]);
        for i in 1..4 {
            let _ = write!(line, "  {:>w$}", r[i], w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let mut words = vec![
        "Steady state: a class holds its entries younger than its timeout, so a shorter \
         timeout keeps today's entries of at most that age (ages are exact to the second the \
         kernel truncates; the boundary second counts in). Unknown ages (custom or capped \
         timeouts, sctp/dccp/gre) are counted as staying."
            .to_string(),
    ];
    if w.at_least {
        words.push(
            "A longer timeout keeps at least today's entries; how many more, the dump cannot \
             say (those older than the old timeout are already gone): \"≥\"."
                .into(),
        );
    }
    if w.converges_within_s > 0 {
        words.push(format!(
            "Convergence: a new timeout applies to an entry at its next packet; entries that get \
             none (TIME_WAIT, idle ESTABLISHED) keep their old expiry, so the table reaches the \
             prediction within {} s (the most seconds any of today's entries has left), not at \
             once. Counts read from nf_conntrack_count lag another 20–45 s: the gc worker reaps \
             expired entries late (a dump reaps them at once).",
            w.converges_within_s
        ));
        if w.evictable_now > 0 {
            words.push(format!(
                "Relief now: {} entries are already older than their new timeout; deleting \
                 them frees them at once, else they leave within {} s. Delete them before \
                 applying: their ages are counted against today's timeouts.",
                thousands(w.evictable_now),
                w.converges_within_s
            ));
        }
    }
    for p in words {
        out.push_str(&wrap(&p, "  ", 88));
    }
    let relief = evict_lines(w);
    if !relief.is_empty() {
        out.push_str("  Relief (first):\n");
        for l in relief {
            let _ = writeln!(out, "    {l}");
        }
    }
    if !w.changes.is_empty() {
        out.push_str("  Apply:\n");
        for l in change::render(&w.changes, ctx).lines() {
            let _ = writeln!(out, "    {l}");
        }
    }
}

/// `ctdoctor tune --evict STATE --idle-over T --apply` for each TCP class
/// with entries already older than its new timeout T (tune's ages are
/// today's timeout minus the seconds left, as here). Other protocols have
/// no `--evict`: their entries leave at their old expiry.
fn evict_lines(w: &WhatIf) -> Vec<String> {
    let netns = w.changes.iter().find_map(|c| c.netns.as_deref());
    w.classes
        .iter()
        .filter(|c| c.evictable_now > 0)
        .filter_map(|c| match (c.class, c.to) {
            (crate::table::ages::Class::Tcp(s), Some(t)) => {
                let force = crate::advice::evict::needs_force(1 << s as u16).is_some();
                let flags = format!(
                    "--evict {} --idle-over {t}{} --apply",
                    s.as_str().to_ascii_lowercase(),
                    if force { " --force" } else { "" }
                );
                crate::advice::change::ctdoctor_line("tune", &flags, netns)
            }
            _ => None,
        })
        .collect()
}

/// The plan as text. `ctx`: how to render changes (`checks::suggest::render_context`).
pub fn to_text(plan: &Plan, ctx: &Context) -> String {
    let p = &plan.size;
    let mut out = String::new();
    let mut head = vec![match &plan.netns {
        Some(n) => format!("netns {n}"),
        None => "this host".to_string(),
    }];
    if let Some(k) = &plan.kernel_release {
        head.push(format!("Linux {k}"));
    }
    if p.ram > 0 {
        head.push(format!("{} RAM", bytes(p.ram)));
    }
    if let Some(c) = plan.cpus {
        head.push(format!("{c} CPUs"));
    }
    let _ = writeln!(out, "ctdoctor plan: {}", head.join(" · "));
    let _ = writeln!(
        out,
        "\nSizing ({} × headroom, a full table within {} of RAM):",
        crate::advice::size::fmt_factor(p.inputs.headroom),
        crate::advice::size::fmt_pct(p.inputs.mem_budget)
    );
    out.push_str(&table(&plan.alternatives, p));
    out.push('\n');
    for r in reasoning(plan) {
        out.push_str(&wrap(&r, "  ", 88));
    }
    if plan.changes.is_empty() {
        out.push_str("\nChanges: none, the current size is the recommended one.\n");
    } else {
        out.push_str("\nChanges:\n");
        for l in change::render(&plan.changes, ctx).lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    if let Some(w) = &plan.what_if {
        match &w.result {
            Ok(r) => what_if_text(&mut out, r, &w.source, ctx),
            Err(e) => {
                let _ = writeln!(out, "\nWhat-if: not predicted: {e}");
            }
        }
    }
    out
}

//! `ctdoctor tune`: show the diff of a change set, apply it journaled
//! (`--apply`), list (`--history`) and undo (`--rollback`) change sets, and
//! free the table now (`--evict`). Thin: the work is in `crate::tune`.
//! Exit 0 done (or diff shown), 1 applied but not everything read back
//! as written, 2 refused (nothing written), 3 ctdoctor failed.

use super::args::{NetnsArg, WriteRoot};
use crate::advice::change::Change;
use crate::advice::suggest;
use crate::checks;
use crate::host::{self, Collect, Select, Source};
use crate::knobs;
use crate::table::filter::Filter;
use crate::tune::{self, apply, diff, evict, journal, profile, report};
use anyhow::{bail, Result};
use std::path::Path;

/// Exit code: applied, but a value or file did not read back as written.
pub const EXIT_PARTIAL: u8 = 1;
/// Exit code: refused, nothing written.
pub const EXIT_REFUSED: u8 = 2;

/// Change conntrack settings safely: a diff first; with --apply, journaled,
/// persisted where they really persist, read back, and reversible.
#[derive(clap::Args, Debug, Default)]
#[command(
    after_help = "Without --apply nothing is written: the diff is printed (runtime now -> new, \
each file's lines now -> new, what boot will then set). --apply writes the journal \
(/var/lib/ctdoctor/journal, fsync'd) first, then the runtime values, then the files, and reads \
everything back.\n\n\
Exit status: 0 done (or diff shown), 1 applied but something did not read back as written, \
2 refused (nothing written), 3 ctdoctor itself failed.\n\n\
Examples:\n  \
ctdoctor tune --set tcp_timeout_time_wait=30                  the diff only\n  \
ctdoctor tune --set tcp_timeout_time_wait=30 --apply          apply and persist\n  \
ctdoctor tune --netns gw --set tcp_timeout_time_wait=30 --apply   in netns gw (runtime only)\n  \
ctdoctor tune --profile edge-gateway                          a profile, sized for this host\n  \
ctdoctor tune --from-check --apply                            what `ctdoctor check` suggests\n  \
ctdoctor tune --from-plan --rate 3000                         the size `ctdoctor plan --rate 3000` recommends\n  \
ctdoctor tune --history                                       the journal\n  \
ctdoctor tune --rollback                                      undo the latest change set\n  \
ctdoctor tune --evict time_wait --port 443                    count what would be freed\n  \
ctdoctor tune --evict time_wait,close --apply                 free the table now\n  \
ctdoctor tune --evict established --idle-over 7875 --force --apply   clients quiet for 2 h+\n  \
ctdoctor tune --listen-backlog 443=4096 --apply               a longer accept queue now, no restart\n  \
ctdoctor tune --root /mnt/img --persist-only --set nf_conntrack_max=524288 --apply   an image"
)]
pub struct Args {
    #[command(flatten)]
    pub netns: NetnsArg,

    /// A setting to change, KEY=VALUE (repeatable, or comma-separated). Keys
    /// as `check` names them: nf_conntrack_max, hashsize (or
    /// nf_conntrack_buckets), tcp_timeout_time_wait, net.ipv4.tcp_tw_reuse,
    /// fs.file-max, …; wins over --profile and --from-check for its key.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// A documented set of changes, sized for this host (docs/tune.md).
    #[arg(long, value_enum, value_name = "NAME")]
    pub profile: Option<profile::Profile>,

    /// The changes `ctdoctor check` suggests for this host (or --netns).
    #[arg(long)]
    pub from_check: bool,

    /// The sizing `ctdoctor plan` recommends (nf_conntrack_max, buckets),
    /// for the count now or --peak / --rate.
    #[arg(long)]
    pub from_plan: bool,

    /// With --from-plan: size for this peak number of entries (1 to
    /// 2,147,483,647: nf_conntrack_max is a 32-bit signed sysctl).
    #[arg(long, value_name = "N", requires = "from_plan", value_parser = crate::util::parse_peak)]
    pub peak: Option<u64>,

    /// With --from-plan: size for this many new connections per second
    /// (more than 0, at most 10,000,000).
    #[arg(long, value_name = "CONN_PER_S", requires = "from_plan", value_parser = crate::util::parse_rate)]
    pub rate: Option<f64>,

    /// Write (journal, runtime, files) instead of printing the diff; with
    /// --evict, delete the entries instead of counting them.
    #[arg(long)]
    pub apply: bool,

    /// Do it even though a later file, /etc/sysctl.conf or kube-proxy would
    /// override it (tune then edits the overriding line), the full table
    /// would not fit the memory budget, or a rollback finds values changed
    /// since; with --evict, allow states other than closing ones.
    #[arg(long)]
    pub force: bool,

    /// Change runtime values only; persist nothing.
    #[arg(long, conflicts_with = "persist_only")]
    pub runtime_only: bool,

    /// Persist only (boot files); change no runtime value.
    #[arg(long)]
    pub persist_only: bool,

    #[command(flatten)]
    pub root: WriteRoot,

    /// Undo change set ID (from --history); without ID the latest one not
    /// rolled back for this namespace (--netns) and root.
    #[arg(
        long,
        value_name = "ID",
        num_args = 0..=1,
        default_missing_value = "",
        conflicts_with_all = ["set", "profile", "from_check", "from_plan", "apply", "history", "evict", "runtime_only", "persist_only"]
    )]
    pub rollback: Option<String>,

    /// List the change sets in the journal, oldest first.
    #[arg(long, conflicts_with_all = ["set", "profile", "from_check", "from_plan", "apply", "evict"])]
    pub history: bool,

    /// Free the table now: delete entries in these TCP states (time_wait,
    /// close, fin_wait, close_wait, last_ack, syn_sent, or `closing` for all
    /// of them; comma-separated). Others (established) need --force.
    #[arg(
        long,
        value_name = "STATES",
        conflicts_with_all = ["set", "profile", "from_check", "from_plan", "runtime_only", "persist_only"]
    )]
    pub evict: Option<String>,

    /// With --evict: only entries with this original source or destination port.
    #[arg(long, requires = "evict")]
    pub port: Option<u16>,

    /// With --evict: only entries whose original source is in CIDR.
    #[arg(long, value_name = "CIDR", requires = "evict")]
    pub src: Option<String>,

    /// With --evict: only entries whose original destination is in CIDR.
    #[arg(long, value_name = "CIDR", requires = "evict")]
    pub dst: Option<String>,

    /// With --evict: only entries idle at least SECS (their state's timeout
    /// in the namespace minus the seconds they have left): what a timeout of
    /// SECS would already have expired. E.g. `--evict established
    /// --idle-over 7875 --force` for clients that went quiet and never closed.
    #[arg(long, value_name = "SECS", requires = "evict")]
    pub idle_over: Option<u32>,

    /// Raise the accept backlog of the listeners on PORT to N now, without
    /// restarting their process (it calls listen() again on their socket,
    /// borrowed through pidfd_getfd; Linux 5.6+). Capped by
    /// net.core.somaxconn: raise that first. Not journaled: the report
    /// prints the undo. The process's own next listen() (a reload) sets
    /// its configured backlog again: persist it there.
    #[arg(
        long,
        value_name = "PORT=N",
        conflicts_with_all = ["set", "profile", "from_check", "from_plan", "runtime_only", "persist_only", "evict", "rollback", "history"]
    )]
    pub listen_backlog: Option<String>,

    /// Print JSON (the plan, what was read back, the history, the eviction).
    #[arg(long)]
    pub json: bool,
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    super::print(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// A refusal (exit 2) or a failure (an error, exit 3).
fn refusal(e: anyhow::Error, json: bool) -> Result<u8> {
    match e.downcast_ref::<apply::Refused>() {
        Some(r) => {
            if json {
                print_json(&serde_json::json!({"refused": r.0}))?;
            } else {
                eprintln!("ctdoctor: refused, nothing written: {}", r.0);
            }
            Ok(EXIT_REFUSED)
        }
        None => Err(e),
    }
}

pub fn run(args: Args) -> Result<u8> {
    let root = args.root.dir.clone();
    if args.history {
        let (sets, bad) = journal::Journal::at(&root).list()?;
        if args.json {
            print_json(&sets)?;
        } else {
            super::print(&report::history_text(&sets, &bad))?;
        }
        return Ok(0);
    }
    if let Some(id) = &args.rollback {
        return rollback(&args, &root, id);
    }
    if let Some(states) = &args.evict {
        return run_evict(&args, states);
    }
    if let Some(spec) = &args.listen_backlog {
        return run_listen_backlog(&args, spec);
    }
    change_set(&args, &root)
}

fn rollback(args: &Args, root: &Path, id: &str) -> Result<u8> {
    let id = if id.is_empty() {
        let j = journal::Journal::at(root);
        let (sets, bad) = j.list()?;
        if let Err(e) = apply::refuse_unreadable(&j, &bad) {
            return refusal(e, args.json);
        }
        match apply::latest(&sets, args.netns.netns.as_deref()) {
            Some(id) => id,
            None => {
                for n in apply::sweep(root)? {
                    eprintln!("ctdoctor: {n}");
                }
                bail!(
                    "no change set to roll back for {} under {} (see --history)",
                    args.netns
                        .netns
                        .as_deref()
                        .map_or("the host".to_string(), |n| format!("netns {n}")),
                    journal::Journal::at(root).dir.display()
                )
            }
        }
    } else {
        id.to_string()
    };
    match apply::rollback(root, &id, args.force, &super::command_line()) {
        Ok(r) => {
            if args.json {
                print_json(&r)?;
            } else {
                super::print(&report::rolled_back_text(&r))?;
            }
            Ok(if r.ok() { 0 } else { EXIT_PARTIAL })
        }
        Err(e) => refusal(e, args.json),
    }
}

fn run_evict(args: &Args, states: &str) -> Result<u8> {
    let mut f = Filter {
        states: evict::parse_states(states).map_err(anyhow::Error::msg)?,
        ..Filter::default()
    };
    if let Some(why) = crate::advice::evict::needs_force(f.states).filter(|_| !args.force) {
        return refusal(apply::refused(why), args.json);
    }
    if let Some(p) = args.port {
        f.port = Some(p);
    }
    for (k, v) in [("src", &args.src), ("dst", &args.dst)] {
        if let Some(v) = v {
            f.set(k, v).map_err(anyhow::Error::msg)?;
        }
    }
    let target = args.netns.target()?;
    let e = evict_in(&target, &f, args.idle_over, &args.root.dir, !args.apply)?;
    if args.json {
        print_json(&e)?;
    } else {
        super::print(&report::evicted_text(&e, &where_(args)))?;
    }
    Ok(if e.errors.is_empty() { 0 } else { EXIT_PARTIAL })
}

fn run_listen_backlog(args: &Args, spec: &str) -> Result<u8> {
    let (port, n) = tune::backlog::parse_spec(spec).map_err(anyhow::Error::msg)?;
    let target = args.netns.target()?;
    let o = tune::backlog::raise(&target, port, n, !args.apply)?;
    if args.json {
        print_json(&o)?;
    } else {
        let undo = |old: u32| {
            let ns = args.netns.netns.as_deref().map(|n| n.to_string());
            crate::advice::change::ctdoctor_line(
                "tune",
                &format!("--listen-backlog {port}={old} --apply"),
                ns.as_deref(),
            )
            .unwrap_or_default()
        };
        super::print(&report::backlog_text(&o, &where_(args), undo))?;
    }
    if o.listeners.is_empty() {
        return Ok(EXIT_PARTIAL);
    }
    Ok(if o.errors() == 0 { 0 } else { EXIT_PARTIAL })
}

/// One line per relief step done, for the journal: what was deleted.
fn relief_lines(relief: &[Change], done: &[evict::Evicted], where_: &str) -> Vec<String> {
    relief
        .iter()
        .zip(done)
        .filter(|(_, e)| !e.dry_run)
        .map(|(c, e)| {
            let idle = c
                .relief
                .as_ref()
                .and_then(|r| r.idle_over)
                .map(|s| format!(" idle over {s} s"))
                .unwrap_or_default();
            format!(
                "{where_}: deleted {} {} entries{idle} ({} gone before their delete, {} failed); \
                 table {} -> {}",
                crate::util::thousands(e.freed),
                c.value.to_ascii_uppercase(),
                crate::util::thousands(e.gone),
                e.errors.values().sum::<u64>(),
                crate::util::thousands(e.count_before),
                crate::util::thousands(e.count_after)
            )
        })
        .collect()
}

/// How reports name the namespace of this run.
fn where_(args: &Args) -> String {
    match &args.netns.netns {
        Some(n) => format!("netns {n}"),
        None => "this netns".into(),
    }
}

/// Evict (or with `dry`, count) what `f` and `idle_over` select in
/// `target`, idle ages read with the journal's earlier timeouts.
fn evict_in(
    target: &netns::Target,
    f: &Filter,
    idle_over: Option<u32>,
    root: &Path,
    dry: bool,
) -> Result<evict::Evicted> {
    let idle = match idle_over {
        Some(secs) => {
            let (idle, note) = evict::idle_over(target, secs, root)?;
            if let Some(n) = note {
                eprintln!("ctdoctor: {n}");
            }
            Some(idle)
        }
        None => None,
    };
    evict::evict(target, f, idle.as_ref(), dry)
}

/// The relief steps of a change set (`Scope::Evict`, from check's
/// findings), run before its settings: a shorter timeout makes the same
/// entries look younger to `--idle-over`, and it frees nothing until their
/// next packet. Without `--apply` they are counted, not run.
fn relieve(args: &Args, target: &netns::Target, relief: &[Change]) -> Result<Vec<evict::Evicted>> {
    let mut out = Vec::new();
    for c in relief {
        let f = Filter {
            states: evict::parse_states(&c.value).map_err(anyhow::Error::msg)?,
            ..Filter::default()
        };
        let idle = c.relief.as_ref().and_then(|r| r.idle_over);
        out.push(evict_in(target, &f, idle, &args.root.dir, !args.apply)?);
    }
    Ok(out)
}

/// In a child netns, check's changes that only the host can make (global
/// knobs, boot settings) are left out of the change set, each with the
/// command to run on the host: the namespace's own steps (relief, its
/// timeouts) are not refused for them.
fn for_this_netns(changes: Vec<Change>, child: bool) -> (Vec<Change>, Vec<String>) {
    use crate::advice::change::Scope;
    if !child {
        return (changes, Vec::new());
    }
    let (host, here): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| {
        matches!(
            c.scope,
            Scope::Global | Scope::Cmdline | Scope::ModuleOption | Scope::BootFile
        )
    });
    let mut keys: Vec<String> = Vec::new();
    for c in &host {
        if matches!(c.scope, Scope::Global) && !keys.iter().any(|k| k.starts_with(&c.key)) {
            keys.push(format!("{}={}", c.key, c.value));
        }
    }
    let notes = if keys.is_empty() && host.is_empty() {
        Vec::new()
    } else {
        let sets: Vec<String> = keys
            .iter()
            .map(|k| format!("--set {}", crate::advice::change::sh_quote(k)))
            .collect();
        vec![format!(
            "left for the host (machine-wide; read-only in a child netns since 5.13): {}; run there: \
             {} tune {} --apply",
            if keys.is_empty() {
                "boot settings".to_string()
            } else {
                keys.join(", ")
            },
            crate::advice::change::program(),
            sets.join(" ")
        )]
    };
    (here, notes)
}

/// The changes `plan` recommends (its default headroom and memory budget;
/// `--peak`, `--rate`): they go through [`apply_changes`] like every
/// other source.
fn plan_changes(args: &Args, facts: &crate::snapshot::Facts) -> Result<Vec<Change>> {
    if let Some(r) = args.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate {r}: give new connections per second, a positive number");
        }
    }
    let inputs = crate::plan::Inputs {
        peak: args.peak,
        rate: args.rate,
        ..crate::plan::Inputs::default()
    };
    let Some(p) = crate::advice::size::size(facts, &inputs) else {
        bail!(
            "--from-plan: conntrack's count or max could not be read, so there is nothing to size"
        );
    };
    Ok(crate::plan::size_changes(facts, &p))
}

fn change_set(args: &Args, root: &Path) -> Result<u8> {
    if args.set.is_empty() && args.profile.is_none() && !args.from_check && !args.from_plan {
        bail!(
            "nothing to tune: give --set KEY=VALUE, --profile NAME, --from-check, --rollback, \
             --history or --evict STATES (see --help)"
        );
    }
    // Parse the flags before reading anything.
    let mut sets = Vec::new();
    for s in &args.set {
        sets.extend(knobs::parse_list(s).map_err(anyhow::Error::msg)?);
    }
    let target = args.netns.target()?;
    let select = if args.from_check || args.rate.is_some() {
        Select::ALL
    } else {
        Select::ALL.without(Source::Table)
    };
    let collected = host::collect_one(
        Path::new("/"),
        &target,
        &Collect {
            select,
            ..Collect::default()
        },
    )?;
    let snap = collected.snapshot;
    let label = suggest::netns_label(&snap.now);
    let mut lists = Vec::new();
    let mut notes = Vec::new();
    if let Some(p) = args.profile {
        let (v, n) = profile::changes(p, &snap.now).map_err(anyhow::Error::msg)?;
        lists.push(v);
        notes.extend(n);
    }
    if args.from_check {
        let all: Vec<Change> = checks::run_all(&snap)
            .into_iter()
            .flat_map(|f| f.changes)
            .collect();
        let (here, host_only) = for_this_netns(all, !snap.now.is_init());
        notes.extend(host_only);
        lists.push(here);
    }
    if args.from_plan {
        lists.push(plan_changes(args, &snap.now)?);
    }
    lists.push(
        sets.iter()
            .map(|s| Change::knob(s.knob.key, &s.value, label.as_deref()))
            .collect(),
    );
    let (changes, merged) = tune::merge(lists);
    notes.extend(merged);
    if changes.is_empty() {
        if args.json {
            print_json(&serde_json::json!({"changes": []}))?;
        } else {
            super::print("nothing to change: the sources given suggest no change\n")?;
        }
        return Ok(0);
    }
    let netns = journal::NetnsRef::of(args.netns.netns.clone(), &snap.now);
    apply_changes(args, root, &target, &snap.now, netns, &changes, notes)
}

/// Plan `changes` for the target and, with --apply, apply them: the path
/// every source of changes (--set, profiles, check, plan) goes through.
pub fn apply_changes(
    args: &Args,
    root: &Path,
    target: &netns::Target,
    facts: &crate::snapshot::Facts,
    netns: journal::NetnsRef,
    changes: &[Change],
    notes: Vec<String>,
) -> Result<u8> {
    let opts = diff::Options {
        force: args.force,
        runtime_only: args.runtime_only,
        persist_only: args.persist_only,
    };
    let (relief, changes): (Vec<Change>, Vec<Change>) = changes
        .iter()
        .cloned()
        .partition(|c| c.scope == crate::advice::change::Scope::Evict);
    let changes = &changes[..];
    let mut p = tune::diff(changes, root, target, facts, &netns, opts)?;
    p.notes.splice(0..0, notes);
    let refused = !p.refusals.is_empty();
    // Relief first (nothing at all when the settings are refused).
    let relieved = if refused {
        Vec::new()
    } else {
        relieve(args, target, &relief)?
    };
    let relief_text: String = relieved
        .iter()
        .map(|e| report::evicted_text(e, &where_(args)))
        .collect();
    let partial = relieved.iter().any(|e| !e.errors.is_empty());
    if args.apply {
        p.relief = relief_lines(&relief, &relieved, &where_(args));
    }
    if !args.apply || refused || (p.is_empty() && p.relief.is_empty()) {
        if args.json {
            print_json(
                &serde_json::json!({"changes": changes, "relief": relieved, "plan": p, "applied": false}),
            )?;
        } else {
            let mut t = relief_text;
            t.push_str(&report::plan_text(&p, root));
            let something = !p.is_empty() || !relief.is_empty();
            if !args.apply && !refused && something {
                t.push_str("not applied: run again with --apply\n");
            }
            super::print(&t)?;
        }
        return Ok(if refused {
            EXIT_REFUSED
        } else if partial {
            EXIT_PARTIAL
        } else {
            0
        });
    }
    match apply::apply(&p, root, target, super::command_line()) {
        Ok(a) => {
            if args.json {
                print_json(
                    &serde_json::json!({"changes": changes, "relief": relieved, "plan": p, "applied": a}),
                )?;
            } else {
                let mut t = relief_text;
                t.push_str(&report::plan_text(&p, root));
                t.push_str(&report::applied_text(&a, root));
                super::print(&t)?;
            }
            Ok(if a.ok() && !partial { 0 } else { EXIT_PARTIAL })
        }
        Err(e) => refusal(e, args.json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `ctdoctor tune ARGS`, registered as main.rs registers it.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand)]
    enum Cmd {
        Tune(Args),
    }

    fn parse(line: &str) -> Result<Args, clap::Error> {
        Cli::try_parse_from(shell_words(line)).map(|c| match c.cmd {
            Cmd::Tune(a) => a,
        })
    }

    fn shell_words(line: &str) -> Vec<String> {
        crate::advice::change::shell_words(line).expect("closed quotes")
    }

    #[test]
    fn words() {
        assert_eq!(
            shell_words("a 'b c' 'it'\\''s' d"),
            vec!["a", "b c", "it's", "d"]
        );
        assert_eq!(crate::advice::change::shell_words("a 'b"), None);
    }

    #[test]
    fn flags_combine_as_documented() {
        let a = parse("ctdoctor tune --set tcp_timeout_time_wait=30 --set max=1 --apply").unwrap();
        assert_eq!(a.set.len(), 2);
        assert!(a.apply);
        assert_eq!(
            parse("x tune --rollback").unwrap().rollback.as_deref(),
            Some("")
        );
        assert_eq!(
            parse("x tune --rollback ID").unwrap().rollback.as_deref(),
            Some("ID")
        );
        assert!(parse("x tune --rollback --set max=1").is_err());
        assert!(parse("x tune --runtime-only --persist-only --set max=1").is_err());
        assert!(parse("x tune --port 443").is_err(), "--port needs --evict");
        assert!(parse("x tune --evict time_wait --port 443 --src 10.0.0.0/8 --apply").is_ok());
        assert!(parse("x tune --evict time_wait --set max=1").is_err());
        assert_eq!(
            parse("x tune --profile edge-gateway").unwrap().profile,
            Some(profile::Profile::EdgeGateway)
        );
    }

    /// The `ctdoctor tune … --apply` line `check` renders is one this
    /// command accepts, with the same values.
    #[test]
    fn rendered_tune_lines_parse_with_these_args() {
        use crate::advice::change::{render, Context};
        let ctx = Context {
            tune: true,
            ..Context::default()
        };
        let cases: Vec<Vec<Change>> = vec![
            vec![Change::knob("tcp_timeout_time_wait", 30, None)],
            vec![
                Change::knob("tcp_timeout_time_wait", 30, Some("gw")),
                Change::knob("nf_conntrack_max", 524288, None),
            ],
            vec![Change::knob(
                "net.ipv4.ip_local_port_range",
                "1024 65535",
                Some("pid 4242"),
            )],
            vec![
                Change::knob("nf_conntrack.hashsize", 524288, None),
                Change::module_hashsize(524288),
                Change::knob("nf_conntrack_max", 524288, None),
            ],
            vec![Change::knob(
                "tcp_timeout_close_wait",
                60,
                Some("/run/netns/x y"),
            )],
        ];
        for changes in cases {
            let text = render(&changes, &ctx);
            let lines: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# or journaled, with rollback: "))
                .collect();
            assert!(!lines.is_empty(), "no tune line in:\n{text}");
            let mut seen = Vec::new();
            for line in lines {
                let a = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert!(a.apply, "{line}");
                let target = a.netns.target().unwrap();
                for s in &a.set {
                    for set in knobs::parse_list(s).unwrap() {
                        seen.push((set.knob.key.to_string(), set.value.clone(), target.clone()));
                    }
                }
            }
            for c in changes.iter().filter(|c| {
                matches!(
                    c.scope,
                    crate::advice::change::Scope::Netns | crate::advice::change::Scope::Global
                )
            }) {
                let want_target = match c.netns.as_deref() {
                    None => netns::Target::Current,
                    Some(l) => match l.strip_prefix("pid ") {
                        Some(p) => netns::Target::Pid(p.parse().unwrap()),
                        None => netns::Target::parse(l).unwrap(),
                    },
                };
                assert!(
                    seen.iter()
                        .any(|(k, v, t)| *k == c.key && *v == c.value && *t == want_target),
                    "{c:?} not in {seen:?}"
                );
            }
        }
    }

    /// Every tune line in the golden reports parses too.
    #[test]
    fn golden_tune_lines_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "txt") {
                continue;
            }
            for l in std::fs::read_to_string(&p).unwrap().lines() {
                if let Some(line) = l.trim().strip_prefix("# or journaled, with rollback: ") {
                    let a = parse(line).unwrap_or_else(|e| panic!("{}: {line}: {e}", p.display()));
                    for s in &a.set {
                        knobs::parse_list(s).unwrap_or_else(|e| panic!("{line}: {e}"));
                    }
                    n += 1;
                }
            }
        }
        assert!(n > 10, "only {n} tune lines in the golden reports");
    }
}

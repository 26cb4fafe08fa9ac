//! Typed fixes: a [`Change`] is one value for one knob (`{key, value,
//! scope}`, plus the namespace or file it applies to), and [`render`] is
//! the one place that turns changes into the shell text a report prints.
//! `tune` applies the same changes, so what `check` prints and what `tune`
//! writes cannot disagree.
//!
//! The rendered text is a shell script: commands, and everything else as
//! `#` comments, so pasting a whole fix block runs only the commands.
//! Per-netns changes run in their namespace (`ip netns exec NAME …`);
//! global ones say they are global; persistence goes to one file,
//! [`SYSCTL_FILE`], edited idempotently — unless a file that is applied
//! later sets the same key, in which case that file is edited — and never
//! into the host's files for a child namespace (it never reads them).
//!
//! Pure: no I/O. Not for: choosing values (advice::suggest, plan) or
//! applying them (tune).

use crate::knobs::{self, KnobScope};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The one sysctl.d file ctdoctor writes (and tells people to write).
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-ctdoctor.conf";
/// The one modprobe.d file for `options nf_conntrack hashsize=N`.
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/ctdoctor.conf";
/// The one modules-load.d file (load nf_conntrack before systemd-sysctl).
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/ctdoctor.conf";

/// Where a change applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A per-netns sysctl, in the namespace `netns` names (absent: the
    /// host's, where ctdoctor runs); persisted in sysctl.d for the host only.
    Netns,
    /// A machine-wide sysctl or /sys value, set on the host (init netns);
    /// persisted in sysctl.d (bucket counts: see `module_option`/`cmdline`).
    Global,
    /// A line in a boot-time file (`file`), e.g. modules-load.d.
    BootFile,
    /// `options MODULE KEY=VALUE` in modprobe.d (`file`).
    ModuleOption,
    /// A kernel command line parameter (printed, never edited).
    Cmdline,
    /// An nft ruleset loaded in the namespace (`value` is the ruleset).
    Ruleset,
    /// A command line (`value`, one line) for what is not a setting: e.g.
    /// `prlimit --pid PID --nofile=N:N`, or writing a systemd drop-in.
    /// `key` says what it does. Printed as is; tune does not run it.
    Command,
    /// Relief now: delete entries in the TCP states `value` names
    /// (`ctdoctor tune --evict`), as `relief` says. A shorter timeout
    /// reaches an entry only at its next packet; this frees the slots at
    /// once, so it comes first.
    Evict,
}

impl Scope {
    /// The name users see (the same as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Netns => "netns",
            Scope::Global => "global",
            Scope::BootFile => "boot_file",
            Scope::ModuleOption => "module_option",
            Scope::Cmdline => "cmdline",
            Scope::Ruleset => "ruleset",
            Scope::Evict => "evict",
            Scope::Command => "command",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One typed fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Full knob name: `net.netfilter.nf_conntrack_max`, `net.ipv4.tcp_tw_reuse`,
    /// `nf_conntrack.hashsize`; for `boot_file`/`ruleset`, what the line is
    /// (`modules-load.d`, `nft`).
    pub key: String,
    /// The value as written to the knob (`262144`, `1024 65535`).
    pub value: String,
    pub scope: Scope,
    /// The target namespace of a `netns`/`ruleset` change outside the host
    /// netns: its name under /run/netns, `pid N`, a path, or `inode N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The file of a `boot_file`/`module_option` change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// What an `evict` change deletes and frees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relief: Option<Relief>,
}

/// An eviction's narrowing and what it frees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relief {
    /// Only entries idle at least this many seconds (`--idle-over`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_over: Option<u32>,
    /// Entries it frees, counted from the dump the finding judged.
    pub frees: u64,
    /// `frees` is scaled from a sample of the table.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sampled: bool,
}

impl Change {
    /// A knob change, scoped by the knob: per-netns knobs in `netns`
    /// (None = the host's), global ones on the host. A sysctl missing from
    /// [`knobs::KNOBS`] (a newer kernel's) is scoped by its tree:
    /// `net.netfilter`, `net.ipv4`, `net.ipv6` per netns, the rest global.
    pub fn knob(key: &str, value: impl ToString, netns: Option<&str>) -> Change {
        let (key, scope) = match knobs::lookup(key) {
            Ok(k) => (
                k.key.to_string(),
                match k.scope {
                    KnobScope::Netns => Scope::Netns,
                    KnobScope::Global => Scope::Global,
                },
            ),
            Err(_) => {
                let per_netns = ["net.netfilter.", "net.ipv4.", "net.ipv6."]
                    .iter()
                    .any(|p| key.starts_with(p));
                (
                    key.to_string(),
                    if per_netns {
                        Scope::Netns
                    } else {
                        Scope::Global
                    },
                )
            }
        };
        Change {
            netns: if scope == Scope::Netns {
                netns.map(str::to_string)
            } else {
                None
            },
            key,
            value: value.to_string(),
            scope,
            file: None,
            relief: None,
        }
    }

    /// `options nf_conntrack hashsize=N` in [`MODPROBE_FILE`].
    pub fn module_hashsize(buckets: u64) -> Change {
        Change {
            key: "nf_conntrack.hashsize".into(),
            value: buckets.to_string(),
            scope: Scope::ModuleOption,
            netns: None,
            file: Some(MODPROBE_FILE.into()),
            relief: None,
        }
    }

    /// `nf_conntrack.hashsize=N` on the kernel command line.
    pub fn cmdline_hashsize(buckets: u64) -> Change {
        Change {
            key: "nf_conntrack.hashsize".into(),
            value: buckets.to_string(),
            scope: Scope::Cmdline,
            netns: None,
            file: None,
            relief: None,
        }
    }

    /// Load nf_conntrack at boot before systemd-sysctl ([`MODULES_LOAD_FILE`]).
    pub fn load_module_early() -> Change {
        Change {
            key: "modules-load.d".into(),
            value: "nf_conntrack".into(),
            scope: Scope::BootFile,
            netns: None,
            file: Some(MODULES_LOAD_FILE.into()),
            relief: None,
        }
    }

    /// An nft ruleset for the namespace `netns` (None = the host's).
    pub fn ruleset(nft: &str, netns: Option<&str>) -> Change {
        Change {
            key: "nft".into(),
            value: nft.to_string(),
            scope: Scope::Ruleset,
            netns: netns.map(str::to_string),
            file: None,
            relief: None,
        }
    }

    /// A command line for what is not a setting ([`Scope::Command`]): `what`
    /// names it (`prlimit`, `systemd drop-in`), `line` is the shell text.
    pub fn command(what: &str, line: &str) -> Change {
        Change {
            key: what.to_string(),
            value: line.replace('\n', " "),
            scope: Scope::Command,
            netns: None,
            file: None,
            relief: None,
        }
    }

    /// Delete entries in `states` (`tune --evict`, e.g. `established`) of
    /// the namespace `netns`, only those idle over `idle_over` seconds when
    /// given; `frees` counted from the finding's dump (`sampled`: scaled
    /// from a sample).
    pub fn evict(
        states: &str,
        idle_over: Option<u32>,
        frees: u64,
        sampled: bool,
        netns: Option<&str>,
    ) -> Change {
        Change {
            key: "evict".into(),
            value: states.to_string(),
            scope: Scope::Evict,
            netns: netns.map(str::to_string),
            file: None,
            relief: Some(Relief {
                idle_over,
                frees,
                sampled,
            }),
        }
    }

    /// For a runtime change (`netns`/`global`): the file it writes and
    /// whether it is a bucket count (persisted by module option or command line).
    fn runtime(&self) -> Option<Runtime> {
        if !matches!(self.scope, Scope::Netns | Scope::Global) {
            return None;
        }
        Some(match knobs::lookup(&self.key) {
            Ok(k) if k.key == self.key => Runtime {
                sysctl: k.is_sysctl(),
                buckets: k.is_buckets(),
                path: k.path.to_string(),
            },
            _ => Runtime {
                sysctl: true,
                buckets: false,
                path: format!("proc/sys/{}", self.key.replace('.', "/")),
            },
        })
    }
}

struct Runtime {
    sysctl: bool,
    buckets: bool,
    path: String,
}

/// A file that is applied at boot after [`SYSCTL_FILE`] and sets a key:
/// the fix must edit it there or its value wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub key: String,
    /// Absolute path.
    pub file: String,
    pub line: u32,
}

/// What the renderer needs to know about the machine, beyond the changes.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The report is about a child (non-init) namespace: global changes
    /// are marked as host-only.
    pub child: bool,
    /// Keys that a later-applied boot file sets.
    pub overrides: Vec<Override>,
    /// nf_conntrack is a module that no modules-load.d entry loads:
    /// net.netfilter keys in sysctl.d would be skipped at boot.
    pub module_loads_late: bool,
    /// Whether `ctdoctor tune` exists, to offer the journaled form.
    pub tune: bool,
}

/// How printed commands name ctdoctor: `ctdoctor` when root's PATH finds
/// this binary, else its path (set once by the binary: [`set_program`]).
static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Name ctdoctor in printed commands as `p` (shell-quoted here). Set once,
/// at start, by the binary; a second call is ignored.
pub fn set_program(p: &str) {
    let _ = PROGRAM.set(sh_quote(p));
}

/// The program name printed commands use (`ctdoctor` unless set).
pub fn program() -> &'static str {
    PROGRAM.get().map_or("ctdoctor", String::as_str)
}

/// `ctdoctor SUB [--netns N] FLAGS` for the namespace a report names
/// (`suggest::netns_label`): `--netns NAME`, `PID` or `PATH`; None for a
/// namespace known only by its inode (no flag names it).
pub fn ctdoctor_line(sub: &str, flags: &str, netns_label: Option<&str>) -> Option<String> {
    let ns = match netns_label {
        None => String::new(),
        Some(l) if l.starts_with("inode ") => return None,
        Some(l) => format!(
            " --netns {}",
            sh_quote(l.strip_prefix("pid ").unwrap_or(l).trim())
        ),
    };
    Some(format!("{} {sub}{ns} {flags}", program()))
}

/// How to run a command inside the namespace `ns` names.
pub fn netns_prefix(ns: Option<&str>) -> String {
    match ns {
        None => String::new(),
        Some(p) if p.starts_with("pid ") => {
            format!("nsenter -t {} -n ", p.trim_start_matches("pid ").trim())
        }
        Some(p) if p.starts_with("inode ") => format!("# (in netns {p}; find its name or a pid) "),
        Some(path) if path.contains('/') => format!("nsenter --net={} ", sh_quote(path)),
        Some(name) => format!("ip netns exec {} ", sh_quote(name)),
    }
}

/// The `--netns` argument that enters the namespace a change names
/// (`gw`, `pid 4242` → `4242`, a path); None for `inode N`, which cannot be
/// entered.
pub fn netns_arg(label: &str) -> Option<String> {
    if let Some(pid) = label.strip_prefix("pid ") {
        return Some(pid.trim().to_string());
    }
    if label.starts_with("inode ") {
        return None;
    }
    // A pinned name of digits alone would read as a pid: give its path.
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("/run/netns/{label}"));
    }
    Some(label.to_string())
}

/// Quote for a POSIX shell when needed.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Split a line as a POSIX shell does for the quoting [`sh_quote`] makes
/// (single quotes, `'\''`, backslash outside quotes), which is all our
/// renderers emit: how the tests paste a printed line. None when a quote is
/// left open.
pub fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    let mut chars = line.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if !quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        words.push(cur);
    }
    (!quoted).then_some(words)
}

/// `sed` pattern matching a line that assigns `key` (dots literal).
fn key_regex(key: &str) -> String {
    let k = key.replace('.', "\\.");
    format!("^[[:space:]]*-\\?{k}[[:space:]]*=")
}

fn sysctl_arg(key: &str, value: &str) -> String {
    sh_quote(&format!("{key}={value}"))
}

/// The shell text for `changes`, as one script (see the module docs).
pub fn render(changes: &[Change], ctx: &Context) -> String {
    let mut out = String::new();
    render_relief(&mut out, changes);
    let (persist, child_persist) = render_runtime(&mut out, changes, ctx);
    if !persist.is_empty() {
        render_persist(&mut out, changes, &persist, ctx);
    }
    if !child_persist.is_empty() {
        render_child_persist(&mut out, &child_persist);
    }
    render_boot_scopes(&mut out, changes);
    if ctx.tune {
        render_tune_lines(&mut out, changes);
    }
    out.trim_end().to_string()
}

/// Relief first: the evictions, as `ctdoctor tune --evict … --apply` lines
/// with what each frees. A namespace known only by its inode cannot be
/// entered: its line is a comment saying so.
fn render_relief(out: &mut String, changes: &[Change]) {
    for c in changes.iter().filter(|c| c.scope == Scope::Evict) {
        let Some(r) = &c.relief else { continue };
        let idle = r
            .idle_over
            .map(|s| format!(" idle over {s} s"))
            .unwrap_or_default();
        let about = if r.sampled { "about " } else { "" };
        let _ = writeln!(
            out,
            "# 1. relief now: delete {about}{} {} entries{idle} (a shorter timeout reaches an entry only at its next packet)",
            crate::util::thousands(r.frees),
            c.value.to_ascii_uppercase()
        );
        let mut flags = format!("--evict {}", sh_quote(&c.value));
        if let Some(s) = r.idle_over {
            let _ = write!(flags, " --idle-over {s}");
        }
        if let Some(why) = crate::advice::evict::needs_force(states_bits(&c.value)) {
            let narrowed = r
                .idle_over
                .map(|s| {
                    format!("; --idle-over {s} keeps only entries no packet refreshed for {s} s")
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "#    --force: {}{narrowed}",
                why.split(':').next().unwrap_or(&why).trim()
            );
            flags.push_str(" --force");
        }
        flags.push_str(" --apply");
        match ctdoctor_line("tune", &flags, c.netns.as_deref()) {
            Some(l) => {
                let _ = writeln!(out, "{l}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "# (netns {} has no name or pid to enter: run `{} tune --netns PID {flags}` with a pid inside it)",
                    c.netns.as_deref().unwrap_or("?"),
                    program()
                );
            }
        }
        let _ = writeln!(out, "# 2. then the timeout, so they do not come back:");
    }
}

/// The TCP state bits of a comma-separated list (`established,time_wait`);
/// unknown names are ignored (the list is ours).
fn states_bits(list: &str) -> u16 {
    list.split(',')
        .filter_map(|n| {
            crate::table::entry::TcpState::from_name(n.trim().to_ascii_uppercase().as_bytes())
        })
        .fold(0, |b, st| b | 1 << st as u16)
}

/// The runtime lines (sysctls, then the hash size through /sys), the
/// namespace's first, then the machine-wide ones under a header of their
/// own; returns the changes still to persist: on the host, and in a child
/// netns.
fn render_runtime<'a>(
    out: &mut String,
    changes: &'a [Change],
    ctx: &Context,
) -> (Vec<&'a Change>, Vec<&'a Change>) {
    let mut persist: Vec<&Change> = Vec::new();
    let mut child_persist: Vec<&Change> = Vec::new();
    let mut global_lines = String::new();
    for c in changes {
        let Some(knob) = c.runtime() else { continue };
        let line = if knob.sysctl {
            format!(
                "{}sysctl -w {}",
                netns_prefix(c.netns.as_deref()),
                sysctl_arg(&c.key, &c.value)
            )
        } else {
            format!("echo {} > /{}", sh_quote(&c.value), knob.path)
        };
        if c.scope == Scope::Global {
            let _ = writeln!(global_lines, "{line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
        if knob.buckets {
            continue; // persisted by a module_option / cmdline change
        }
        if c.netns.is_some() {
            child_persist.push(c);
        } else {
            persist.push(c);
        }
    }
    if !global_lines.is_empty() {
        let header = if ctx.child {
            "# machine-wide, one value for every netns: run on the host (init netns)"
        } else {
            "# machine-wide, one value for every netns:"
        };
        let _ = writeln!(out, "{header}");
        out.push_str(&global_lines);
    }
    (persist, child_persist)
}

/// Persistence of host keys: an existing file that overrides ours is
/// edited in place, the rest go to our sysctl.d file.
fn render_persist(out: &mut String, changes: &[Change], persist: &[&Change], ctx: &Context) {
    let _ = writeln!(
        out,
        "# persist (applied at boot by systemd-sysctl / sysctl --system):"
    );
    let mut ours = Vec::new();
    for c in persist {
        match ctx.overrides.iter().find(|o| o.key == c.key) {
            Some(o) => {
                let _ = writeln!(
                    out,
                    "#   {}:{} sets {} and is applied after {SYSCTL_FILE}: edit it there",
                    o.file, o.line, c.key
                );
                let _ = writeln!(
                    out,
                    "sed -i {} {}",
                    sh_quote(&format!("{}s/=.*/= {}/", o.line, c.value)),
                    sh_quote(&o.file)
                );
            }
            None => ours.push(*c),
        }
    }
    if !ours.is_empty() {
        let _ = writeln!(out, "f={SYSCTL_FILE}; touch \"$f\"");
        for c in ours {
            let _ = writeln!(
                out,
                "sed -i {} \"$f\" && echo {} >> \"$f\"",
                sh_quote(&format!("/{}/d", key_regex(&c.key))),
                sh_quote(&format!("{} = {}", c.key, c.value))
            );
        }
    }
    if ctx.module_loads_late && persist.iter().any(|c| c.key.starts_with("net.netfilter.")) {
        let already = changes.iter().any(|c| c.scope == Scope::BootFile);
        if !already {
            let _ = writeln!(
                out,
                "# nf_conntrack is a module loaded after systemd-sysctl: load it early or these keys are skipped at boot"
            );
            render_boot_file(out, &Change::load_module_early());
        }
    }
}

/// A child netns never reads /etc/sysctl.d: say where its values belong.
fn render_child_persist(out: &mut String, child_persist: &[&Change]) {
    let ns = child_persist[0].netns.as_deref().unwrap_or("NAME");
    let _ = writeln!(
        out,
        "# a child netns never reads /etc/sysctl.d: set these where netns {ns} is created"
    );
    let _ = writeln!(
        out,
        "# (the script or unit that makes it: {}sysctl -w KEY=VALUE; docker run --sysctl KEY=VALUE;",
        netns_prefix(Some(ns))
    );
    let _ = writeln!(out, "#  Kubernetes: the pod's securityContext.sysctls)");
}

/// Changes with no runtime line: module options, the kernel command line,
/// boot files and rulesets.
fn render_boot_scopes(out: &mut String, changes: &[Change]) {
    for c in changes {
        match c.scope {
            Scope::ModuleOption => {
                let _ = writeln!(
                    out,
                    "# persist the hash size (nf_conntrack is a module; a boot hashsize also makes the default max 8 × hashsize):"
                );
                let file = c.file.as_deref().unwrap_or(MODPROBE_FILE);
                let (module, opt) = c.key.split_once('.').unwrap_or(("nf_conntrack", &c.key));
                let _ = writeln!(out, "f={file}; touch \"$f\"");
                let _ = writeln!(
                    out,
                    "sed -i {} \"$f\" && echo {} >> \"$f\"",
                    sh_quote(&format!("/^options {module} .*{opt}=/d")),
                    sh_quote(&format!("options {module} {opt}={}", c.value))
                );
            }
            Scope::Cmdline => {
                let _ = writeln!(
                    out,
                    "# persist the hash size: nf_conntrack is built in, so add {}={} to the kernel command line",
                    c.key, c.value
                );
                let _ = writeln!(
                    out,
                    "# (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub; it applies at the next boot,"
                );
                let _ = writeln!(
                    out,
                    "#  and a boot hashsize makes the default max 8 × hashsize: keep max in sysctl.d)"
                );
            }
            Scope::BootFile => render_boot_file(out, c),
            Scope::Ruleset => {
                // No heredoc: a report indents its fix, and an indented
                // terminator never ends a heredoc when pasted.
                let lines: Vec<String> = c.value.trim_end().lines().map(sh_quote).collect();
                let _ = writeln!(
                    out,
                    "printf '%s\\n' {} | {}nft -f -",
                    lines.join(" "),
                    netns_prefix(c.netns.as_deref()),
                );
            }
            Scope::Command => {
                let _ = writeln!(out, "{}", c.value);
            }
            Scope::Netns | Scope::Global | Scope::Evict => {}
        }
    }
}

/// The same runtime changes as `ctdoctor tune` lines, one per namespace
/// (global keys always on the host).
fn render_tune_lines(out: &mut String, changes: &[Change]) {
    let sets: Vec<&Change> = changes.iter().filter(|c| c.runtime().is_some()).collect();
    let mut groups: Vec<(Option<&str>, Vec<&Change>)> = Vec::new();
    for c in sets {
        let ns = if c.scope == Scope::Global {
            None
        } else {
            c.netns.as_deref()
        };
        match groups.iter_mut().find(|(n, _)| *n == ns) {
            Some((_, v)) => v.push(c),
            None => groups.push((ns, vec![c])),
        }
    }
    for (ns, group) in groups {
        let mut line = format!("# or journaled, with rollback: {} tune", program());
        match ns.map(netns_arg) {
            None => {}
            Some(Some(arg)) => {
                let _ = write!(line, " --netns {}", sh_quote(&arg));
            }
            // An inode alone cannot be entered: no line.
            Some(None) => continue,
        }
        for c in group {
            let _ = write!(
                line,
                " --set {}",
                sysctl_arg(knobs::short_name(&c.key), &c.value)
            );
        }
        line.push_str(" --apply");
        let _ = writeln!(out, "{line}");
    }
}

fn render_boot_file(out: &mut String, c: &Change) {
    let file = c.file.as_deref().unwrap_or(MODULES_LOAD_FILE);
    let _ = writeln!(
        out,
        "f={}; touch \"$f\"; grep -qxF {} \"$f\" || echo {} >> \"$f\"",
        sh_quote(file),
        sh_quote(&c.value),
        sh_quote(&c.value)
    );
}

/// A fix block: the rendered changes, then each note as a comment.
pub fn fix_text(changes: &[Change], notes: &[String], ctx: &Context) -> String {
    let mut out = render(changes, ctx);
    for n in notes {
        for line in n.lines() {
            if !out.is_empty() {
                out.push('\n');
            }
            if line.starts_with('#') || line.is_empty() {
                out.push_str(line);
            } else {
                out.push_str("# ");
                out.push_str(line);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Context {
        Context::default()
    }

    /// A ruleset is printed without a heredoc (an indented terminator never
    /// ends one when pasted), and the printf words give back the ruleset.
    #[test]
    fn rulesets_paste_without_a_heredoc() {
        let rules = "table inet t {\n  chain c { ct state untracked accept comment \"it's\" }\n}";
        let text = render(&[Change::ruleset(rules, Some("gw"))], &host());
        assert!(!text.contains("<<"), "{text}");
        let words = shell_words(&text).unwrap();
        assert_eq!(&words[..2], ["printf", "%s\\n"]);
        let bar = words.iter().position(|w| w == "|").unwrap();
        assert_eq!(words[2..bar].join("\n"), rules);
        assert_eq!(
            &words[bar + 1..],
            ["ip", "netns", "exec", "gw", "nft", "-f", "-"]
        );
    }

    #[test]
    fn per_netns_changes_run_in_their_namespace_and_are_not_persisted_on_the_host() {
        let c = [Change::knob("tcp_timeout_time_wait", 30, Some("gw"))];
        assert_eq!(c[0].scope, Scope::Netns);
        assert_eq!(c[0].key, "net.netfilter.nf_conntrack_tcp_timeout_time_wait");
        let t = render(
            &c,
            &Context {
                child: true,
                ..host()
            },
        );
        assert!(
            t.starts_with(
                "ip netns exec gw sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=30\n"
            ),
            "{t}"
        );
        assert!(
            t.lines()
                .all(|l| l.starts_with('#') || !l.contains("/etc/")),
            "no host file is written: {t}"
        );
        assert!(t.contains("never reads /etc/sysctl.d"), "{t}");
        for l in t.lines() {
            assert!(
                l.starts_with('#') || l.starts_with("ip netns exec gw "),
                "{l}"
            );
        }
    }

    #[test]
    fn global_changes_say_so_and_carry_no_netns() {
        let c = Change::knob("nf_conntrack_max", 524_288, Some("gw"));
        assert_eq!(c.scope, Scope::Global);
        assert_eq!(c.netns, None);
        let t = render(
            &[c],
            &Context {
                child: true,
                ..host()
            },
        );
        assert!(
            t.starts_with(
                "# machine-wide, one value for every netns: run on the host (init netns)\nsysctl -w net.netfilter.nf_conntrack_max=524288\n"
            ),
            "{t}"
        );
        assert!(t.contains("90-ctdoctor.conf"), "{t}");
    }

    #[test]
    fn host_persistence_is_idempotent_in_one_file() {
        let c = [
            Change::knob("nf_conntrack_tcp_timeout_time_wait", 30, None),
            Change::knob("net.ipv4.ip_local_port_range", "1024 65535", None),
        ];
        let t = render(&c, &host());
        assert!(
            t.contains("sysctl -w 'net.ipv4.ip_local_port_range=1024 65535'"),
            "{t}"
        );
        assert!(
            t.contains("f=/etc/sysctl.d/90-ctdoctor.conf; touch \"$f\""),
            "{t}"
        );
        assert!(t.contains(
            "sed -i '/^[[:space:]]*-\\?net\\.netfilter\\.nf_conntrack_tcp_timeout_time_wait[[:space:]]*=/d' \"$f\" && echo 'net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30' >> \"$f\""
        ), "{t}");
        assert!(!t.contains("cat >"), "never overwrites");
    }

    #[test]
    fn a_later_file_is_edited_where_it_wins() {
        let c = [Change::knob("nf_conntrack_max", 524_288, None)];
        let ctx = Context {
            overrides: vec![Override {
                key: "net.netfilter.nf_conntrack_max".into(),
                file: "/etc/sysctl.conf".into(),
                line: 7,
            }],
            ..host()
        };
        let t = render(&c, &ctx);
        assert!(
            t.contains("sed -i '7s/=.*/= 524288/' /etc/sysctl.conf"),
            "{t}"
        );
        assert!(!t.contains("90-ctdoctor.conf\"; touch"), "{t}");
    }

    #[test]
    fn buckets_persist_through_the_module_option_or_the_command_line() {
        let c = [
            Change::knob("nf_conntrack_buckets", 524_288, None),
            Change::module_hashsize(524_288),
        ];
        let t = render(&c, &host());
        assert!(
            t.contains("sysctl -w net.netfilter.nf_conntrack_buckets=524288"),
            "{t}"
        );
        assert!(
            !t.contains("nf_conntrack_buckets = "),
            "not in sysctl.d: {t}"
        );
        assert!(
            t.contains("echo 'options nf_conntrack hashsize=524288' >> \"$f\""),
            "{t}"
        );
        let t = render(&[Change::cmdline_hashsize(524_288)], &host());
        assert!(
            t.lines().all(|l| l.starts_with('#')),
            "printed, not run: {t}"
        );
        let t = render(&[Change::knob("hashsize", 1024, None)], &host());
        assert!(
            t.starts_with(
                "# machine-wide, one value for every netns:\necho 1024 > /sys/module/nf_conntrack/parameters/hashsize"
            ),
            "{t}"
        );
    }

    #[test]
    fn a_late_module_gets_loaded_early() {
        let c = [Change::knob("nf_conntrack_max", 1, None)];
        let t = render(
            &c,
            &Context {
                module_loads_late: true,
                ..host()
            },
        );
        assert!(t.contains("echo nf_conntrack >> \"$f\""), "{t}");
    }

    #[test]
    fn namespaces_by_pid_path_and_quoting() {
        assert_eq!(netns_prefix(Some("pid 42")), "nsenter -t 42 -n ");
        assert_eq!(
            netns_prefix(Some("/proc/7/ns/net")),
            "nsenter --net=/proc/7/ns/net "
        );
        assert_eq!(netns_prefix(Some("a b")), "ip netns exec 'a b' ");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn notes_become_comments() {
        let t = fix_text(
            &[],
            &[
                "Reuse connections\n  (nginx keepalive)".into(),
                "# already".into(),
            ],
            &host(),
        );
        assert_eq!(t, "# Reuse connections\n#   (nginx keepalive)\n# already");
    }

    #[test]
    fn json_shape() {
        let v =
            serde_json::to_value(Change::knob("tcp_timeout_close_wait", 60, Some("gw"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"key": "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
                               "value": "60", "scope": "netns", "netns": "gw"})
        );
        let v = serde_json::to_value(Change::module_hashsize(8)).unwrap();
        assert_eq!(v["scope"], "module_option");
        assert_eq!(v["file"], MODPROBE_FILE);
    }
}

//! The diff of a change set, as a pure function: given the changes and what
//! was read (runtime values in the target namespace, the boot files under
//! the root, the facts), [`plan`] says exactly what would be written — each
//! runtime value now → new, each file's whole text now → new — what boot
//! would then set for every key persisted (replaying host::persist's
//! precedence on the edited texts), what must be done by hand (the kernel
//! command line), and what is refused and why. Nothing is written unless
//! the plan has no refusal.
//!
//! Rules (docs/tune.md): a global key in a child netns is refused (0444
//! there); a child netns gets runtime values only (it never reads
//! /etc/sysctl.d) and instructions to persist them where it is made; host
//! sysctls persist in [`change::SYSCTL_FILE`], the hash size in
//! modprobe.d (module) or on the kernel command line (built in, printed);
//! a later file, /etc/sysctl.conf, or a running kube-proxy that would
//! override a value refuses the plan unless `force` (which edits the
//! overriding line, as `check`'s fix text says to); a max whose full table
//! exceeds a quarter of RAM (check's conntrack.memory line) is refused
//! unless `force`.
//!
//! Pure. Not for: reading (tune::apply::read_inputs) or writing
//! (tune::apply).

use super::files::{self, Boot};
use super::journal::NetnsRef;
use crate::advice::change::{self, Change, Scope};
use crate::advice::sizing;
use crate::advice::suggest;
use crate::host::persist::{BootTexts, Setting};
use crate::knobs;
use crate::knobs::{same, KUBE_PROXY_KEYS};
use crate::snapshot::Facts;
use serde::Serialize;
use std::collections::BTreeMap;

/// The module parameter and the sysctl that both resize the hash.
pub const HASHSIZE_PATH: &str = "sys/module/nf_conntrack/parameters/hashsize";
pub const BUCKETS_PATH: &str = "proc/sys/net/netfilter/nf_conntrack_buckets";
const MAX_KEY: &str = "net.netfilter.nf_conntrack_max";

/// How to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Override the refusals that say so (later files, kube-proxy, memory).
    pub force: bool,
    /// Set runtime values only, persist nothing.
    pub runtime_only: bool,
    /// Persist only, change no runtime value.
    pub persist_only: bool,
}

/// A runtime knob as read in the target namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnobNow {
    /// The value (whitespace-normalised), or why it could not be read.
    pub value: Result<String, String>,
    /// Ok when it can be written; else why not (mode 0444, read-only mount).
    pub writable: Result<(), String>,
}

/// What boot reads, under the root.
#[derive(Debug, Clone, Default)]
pub struct BootFacts {
    pub texts: BootTexts,
    /// The files tune writes (relative paths of [`change::SYSCTL_FILE`],
    /// [`change::MODPROBE_FILE`], [`change::MODULES_LOAD_FILE`]): their texts,
    /// None when absent.
    pub ours: BTreeMap<String, Option<String>>,
    /// nf_conntrack is a module (Some(true)), built in (Some(false)), unknown.
    pub module: Option<bool>,
    /// Something loads nf_conntrack early at boot (modules-load.d, /etc/modules,
    /// `modules-load=`).
    pub loads_early: bool,
    /// `nf_conntrack.hashsize=` on the kernel command line.
    pub cmdline_hashsize: Option<Setting>,
    /// The root the files are under, as messages show it before a file's
    /// absolute path: empty for `/`.
    pub root: String,
}

impl BootFacts {
    /// Where a setting is, as a path on this machine (`/mnt/img/etc/...:2`).
    pub fn place(&self, s: &Setting) -> String {
        format!("{}{}", self.root, s.place())
    }

    /// An absolute file name (`/etc/...`) under the root.
    pub fn shown(&self, abs: &str) -> String {
        format!("{}{abs}", self.root)
    }
}

/// Everything [`plan`] looks at.
pub struct Inputs<'a> {
    pub facts: &'a Facts,
    pub netns: &'a NetnsRef,
    /// By relative path (`proc/sys/...`, `sys/module/...`): see [`knob_paths`].
    pub knobs: &'a BTreeMap<String, KnobNow>,
    pub boot: &'a BootFacts,
    /// Pids of running kube-proxy processes.
    pub kube_proxy: &'a [u32],
}

/// One runtime value to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeWrite {
    pub key: String,
    /// Relative path written (`proc/sys/...`, `sys/module/...`).
    pub path: String,
    pub old: String,
    pub new: String,
    /// What reading it back must give (a bucket count is rounded up to
    /// whole pages of heads by the kernel).
    pub expect: String,
    pub global: bool,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileWrite {
    /// Relative to the root (`etc/sysctl.d/90-ctdoctor.conf`).
    pub path: String,
    /// Its text now; None when it does not exist.
    pub old: Option<String>,
    pub new: String,
    pub why: String,
}

/// What boot will set for a persisted key once the files are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootCheck {
    pub key: String,
    pub value: String,
    /// Where the winning assignment is (procps `sysctl --system`), e.g.
    /// `/etc/sysctl.d/90-ctdoctor.conf:2`, and its value.
    pub procps: Option<(String, String)>,
    /// The same for systemd-sysctl (no /etc/sysctl.conf).
    pub systemd: Option<(String, String)>,
    pub ok: bool,
}

impl BootCheck {
    /// What `boot` sets for `key`, checked against `value`; places shown
    /// under `root` (empty for `/`).
    pub fn new(key: &str, value: &str, boot: &Boot, root: &str) -> BootCheck {
        let (p, s) = boot.sysctl(key);
        let place = |s: Option<Setting>| s.map(|s| (format!("{root}{}", s.place()), s.value));
        let ok = [&p, &s]
            .iter()
            .all(|w| w.as_ref().is_some_and(|w| same(&w.value, value)));
        BootCheck {
            key: key.to_string(),
            value: value.to_string(),
            procps: place(p),
            systemd: place(s),
            ok,
        }
    }
}

/// The diff of a change set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub netns: NetnsRef,
    pub runtime: Vec<RuntimeWrite>,
    /// Runtime values already as asked (`key = value`).
    pub unchanged: Vec<String>,
    pub files: Vec<FileWrite>,
    pub boot: Vec<BootCheck>,
    /// Changes tune does not make, to be made by hand (kernel command line).
    pub by_hand: Vec<String>,
    pub notes: Vec<String>,
    /// Why nothing may be written; empty when the plan can be applied.
    pub refusals: Vec<String>,
    /// What the relief before these settings deleted (`tune --from-check`:
    /// evictions, one line each): journaled as events of the change set,
    /// since a deleted entry cannot be restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relief: Vec<String>,
}

impl Plan {
    /// Whether applying would write anything.
    pub fn is_empty(&self) -> bool {
        self.runtime.is_empty() && self.files.is_empty()
    }
}

/// Where a runtime change is written: (path, is a bucket count).
fn runtime_path(key: &str) -> (String, bool) {
    match knobs::lookup(key) {
        Ok(k) if k.key == key => (k.path.to_string(), k.is_buckets()),
        _ => (format!("proc/sys/{}", key.replace('.', "/")), false),
    }
}

/// The runtime files the edge must read for `changes` (in the target
/// namespace): each change's knob, both files of the hash size, and max.
pub fn knob_paths(changes: &[Change]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for c in changes {
        if !matches!(c.scope, Scope::Netns | Scope::Global) {
            continue;
        }
        let (p, buckets) = runtime_path(&c.key);
        if buckets {
            v.extend([HASHSIZE_PATH.to_string(), BUCKETS_PATH.to_string()]);
        } else {
            v.push(p);
        }
    }
    v.push(runtime_path(MAX_KEY).0);
    v.sort();
    v.dedup();
    v
}

/// Whether kube-proxy writes this key at start.
fn kube_proxy_sets(key: &str, buckets: bool) -> bool {
    buckets || KUBE_PROXY_KEYS.contains(&runtime_path(key).0.trim_start_matches("proc/sys/"))
}

/// The file edits being built, by relative path: (old text, new text, why).
#[derive(Default)]
struct Edits {
    order: Vec<String>,
    files: BTreeMap<String, (Option<String>, String, Vec<String>)>,
}

impl Edits {
    fn current<'a>(&'a self, path: &str, old: Option<&'a str>) -> Option<&'a str> {
        match self.files.get(path) {
            Some((_, new, _)) => Some(new.as_str()),
            None => old,
        }
    }

    fn put(&mut self, path: &str, old: Option<&str>, new: String, why: String) {
        match self.files.get_mut(path) {
            Some(e) => {
                e.1 = new;
                if !e.2.contains(&why) {
                    e.2.push(why);
                }
            }
            None => {
                self.order.push(path.to_string());
                self.files
                    .insert(path.to_string(), (old.map(str::to_string), new, vec![why]));
            }
        }
    }

    fn into_writes(self) -> Vec<FileWrite> {
        let mut files = self.files;
        self.order
            .iter()
            .filter_map(|p| {
                let (old, new, why) = files.remove(p)?;
                (old.as_deref() != Some(new.as_str())).then(|| FileWrite {
                    path: p.clone(),
                    old,
                    new,
                    why: why.join("; "),
                })
            })
            .collect()
    }
}

fn rel(abs: &str) -> String {
    abs.trim_start_matches('/').to_string()
}

/// Where each change goes once routed (the accumulators of [`plan`]).
#[derive(Default)]
struct Routed {
    sysctl_persist: Vec<(String, String)>,
    buckets_persist: Option<u64>,
    module_options: Vec<(String, u64)>,
    boot_lines: Vec<(String, String)>,
    child_keys: Vec<(String, String)>,
    new_max: Option<u64>,
    new_buckets: Option<u64>,
}

/// The file edits and the boot they lead to, as the persist steps build them.
struct Writes {
    edits: Edits,
    boot: Boot,
}

/// A refusal that --force overrides: a note with it.
fn forceable(p: &mut Plan, opts: Options, why: String) {
    if opts.force {
        p.notes.push(format!("(--force) {why}"));
    } else {
        p.refusals
            .push(format!("{why} (run again with --force to do it anyway)"));
    }
}

/// The diff of `changes` against what was read (see the module docs):
/// route every change, check the memory, then persist — the hash size,
/// the sysctls (and whatever overrides them), module options, boot lines.
pub fn plan(changes: &[Change], inp: &Inputs<'_>, opts: Options) -> Plan {
    let mut d = Diff::new(inp, opts);
    if opts.runtime_only && opts.persist_only {
        d.p.refusals
            .push("--runtime-only and --persist-only together change nothing".into());
        return d.p;
    }
    d.refuse_duplicates(changes);
    let mut r = Routed::default();
    for c in changes {
        d.route(c, &mut r);
    }
    memory_check(
        &mut d.p,
        inp,
        r.new_max,
        r.new_buckets,
        &|p: &mut Plan, why| forceable(p, opts, why),
    );
    if d.child {
        d.child_notes(&r);
        return d.p;
    }
    if opts.runtime_only {
        if !d.p.runtime.is_empty() {
            d.p.notes.push(
                "--runtime-only: nothing persisted, these values are lost at the next reboot"
                    .into(),
            );
        }
        return d.p;
    }
    let mut w = Writes {
        edits: Edits::default(),
        boot: Boot::new(&inp.boot.texts),
    };
    d.persist_hashsize(&mut r, &w);
    d.persist_sysctls(&mut r, &mut w);
    d.persist_module_options(&r, &mut w);
    d.persist_boot_lines(&r, &mut w);
    d.finish(w.edits)
}

/// One diff being built: the plan so far and what it is made from.
struct Diff<'a, 'b> {
    p: Plan,
    inp: &'a Inputs<'b>,
    opts: Options,
    child: bool,
    /// How messages name the namespace.
    label: String,
}

impl<'a, 'b> Diff<'a, 'b> {
    fn new(inp: &'a Inputs<'b>, opts: Options) -> Self {
        Diff {
            p: Plan {
                netns: inp.netns.clone(),
                ..Plan::default()
            },
            inp,
            opts,
            child: !inp.netns.is_init,
            label: inp
                .netns
                .label
                .clone()
                .or_else(|| inp.netns.arg.clone())
                .unwrap_or_else(|| "this".into()),
        }
    }

    fn forceable(&mut self, why: String) {
        forceable(&mut self.p, self.opts, why);
    }

    /// The same knob twice with two values: a caller's mistake.
    fn refuse_duplicates(&mut self, changes: &[Change]) {
        let mut seen: BTreeMap<(String, Scope, Option<String>), &str> = BTreeMap::new();
        for c in changes {
            let k = (c.key.clone(), c.scope, c.file.clone());
            if let Some(v) = seen.insert(k, &c.value) {
                if !same(v, &c.value) {
                    self.p.refusals.push(format!(
                        "{} is given twice with different values ({v} and {})",
                        c.key, c.value
                    ));
                }
            }
        }
    }

    /// Route one change: refused, written at runtime, and/or queued for
    /// persisting (sysctl.d, module option, command line, boot line).
    fn route(&mut self, c: &Change, r: &mut Routed) {
        if self.wrong_netns(c) || self.route_boot(c, r) {
            return;
        }
        self.route_runtime(c, r);
    }

    /// A change named for another namespace than this run's: refused.
    fn wrong_netns(&mut self, c: &Change) -> bool {
        if let Some(ns) = &c.netns {
            if Some(ns) != self.inp.netns.label.as_ref() && Some(ns) != self.inp.netns.arg.as_ref()
            {
                self.p.refusals.push(format!(
                    "{} is a change for netns {ns}, but this run is about {}",
                    c.key,
                    self.inp.netns.describe()
                ));
                return true;
            }
        }
        false
    }

    /// Changes with no runtime value (rulesets, module options, the
    /// command line, boot lines): refused or queued. False for a sysctl.
    fn route_boot(&mut self, c: &Change, r: &mut Routed) -> bool {
        let label = self.label.clone();
        match c.scope {
            Scope::Netns | Scope::Global => false,
            Scope::Ruleset => {
                self.p.refusals.push(
                    "an nft ruleset is not a setting: NOTRACK rules are applied by `ctdoctor notrack --apply`"
                        .into(),
                );
                true
            }
            Scope::Command => {
                push_once(
                    &mut self.p.by_hand,
                    format!("{} (not a setting; run it yourself): {}", c.key, c.value),
                );
                true
            }
            Scope::Evict => {
                self.p.refusals.push(
                    "an eviction is not a setting: `ctdoctor tune --evict` (and --from-check, \
                     before the settings) deletes entries"
                        .into(),
                );
                true
            }
            _ if self.child => {
                self.p.refusals.push(format!(
                    "{} is a boot setting of the host: run it on the host, not in netns {label}",
                    c.key
                ));
                true
            }
            Scope::ModuleOption => {
                match c.value.parse::<u64>() {
                    Ok(n) if !self.opts.runtime_only => r
                        .module_options
                        .push((c.file.clone().unwrap_or(change::MODPROBE_FILE.into()), n)),
                    Ok(_) => {}
                    Err(_) => self
                        .p
                        .refusals
                        .push(format!("{}: {:?} is not a number", c.key, c.value)),
                }
                true
            }
            Scope::Cmdline => {
                if !self.opts.runtime_only {
                    push_once(&mut self.p.by_hand, cmdline_text(&c.key, &c.value));
                }
                true
            }
            Scope::BootFile => {
                if !self.opts.runtime_only {
                    r.boot_lines.push((
                        c.file.clone().unwrap_or(change::MODULES_LOAD_FILE.into()),
                        c.value.clone(),
                    ));
                }
                true
            }
        }
    }

    /// A sysctl (or the hash size): validated, written at runtime and/or
    /// queued for persisting.
    fn route_runtime(&mut self, c: &Change, r: &mut Routed) {
        let label = self.label.clone();
        let mut global = c.scope == Scope::Global;
        let knob = knobs::lookup(&c.key).ok().filter(|k| k.key == c.key);
        if self.child && global {
            // Read-only in a child netns since 2671fa4dc010 (5.13, and
            // 5.4.120 / 5.10.38): said from the file's mode as read here,
            // not assumed — a kernel with a per-netns max (in nf-next)
            // lets a child set its own. The hash size is the init netns's
            // only on every kernel (nf_conntrack_set_hashsize).
            let (path, buckets) = runtime_path(&c.key);
            let here = self.inp.knobs.get(&path).map(|k| &k.writable);
            match here {
                Some(Ok(())) if !buckets => {
                    self.p.notes.push(format!(
                        "{} is writable in {label}: this kernel lets a child netns set its own \
                         value, which limits this netns only",
                        c.key
                    ));
                    global = false;
                }
                _ => {
                    let why = match here {
                        Some(Err(e)) => e.clone(),
                        _ if buckets => "the init netns's only".to_string(),
                        _ => format!("/{path} was not read"),
                    };
                    self.p.refusals.push(format!(
                        "{} is global (one value for the whole machine) and cannot be set from a \
                         child netns such as {label} ({why}): set it on the host, e.g. \
                         `ctdoctor tune --set {}={} --apply`",
                        c.key,
                        knobs::short_name(&c.key),
                        change::sh_quote(&c.value)
                    ));
                    return;
                }
            }
        }
        let value = match knob.map(|k| k.validate(&c.value)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                self.p.refusals.push(e);
                return;
            }
            None => crate::knobs::normalize_value(&c.value),
        };
        let (path, buckets) = runtime_path(&c.key);
        if c.key == MAX_KEY {
            r.new_max = value.parse().ok();
        }
        if buckets {
            r.new_buckets = value.parse().ok().map(sizing::round_buckets);
        }
        let expect = if buckets {
            value
                .parse::<u64>()
                .map(|n| sizing::round_buckets(n).to_string())
                .unwrap_or(value.clone())
        } else {
            value.clone()
        };
        if !self.inp.kube_proxy.is_empty() && kube_proxy_sets(&c.key, buckets) {
            self.forceable(format!(
                "kube-proxy runs here (pid {}) and sets {} itself at every start, over any \
                     other value: set it in kube-proxy's configuration (conntrack maxPerCore, \
                     tcpEstablishedTimeout, tcpCloseWaitTimeout)",
                self.inp.kube_proxy[0], c.key
            ));
        }
        if !self.opts.persist_only {
            runtime_write(
                &mut self.p,
                self.inp,
                &c.key,
                &path,
                buckets,
                &value,
                &expect,
                global,
            );
        }
        if self.opts.runtime_only {
            return;
        }
        if self.child {
            r.child_keys.push((c.key.clone(), value));
        } else if buckets {
            r.buckets_persist = value.parse().ok();
        } else if knob.is_none_or(|k| k.is_sysctl()) {
            r.sysctl_persist.push((c.key.clone(), value));
        }
    }

    /// A child netns persists nothing on the host: say where to persist.
    fn child_notes(&mut self, r: &Routed) {
        let label = self.label.clone();
        let child_keys = &r.child_keys;
        if self.opts.persist_only {
            self.p.refusals.push(format!(
                "netns {label} is a child namespace: it never reads /etc/sysctl.d (it starts \
                 from the kernel's defaults), so there is nothing to persist on the host; apply \
                 at runtime and persist where the namespace is made"
            ));
        }
        if !child_keys.is_empty() && self.p.refusals.is_empty() {
            let prefix = change::netns_prefix(self.inp.netns.label.as_deref());
            let mut n = format!(
                "netns {label} is a child namespace: it never reads /etc/sysctl.d, so nothing is \
                 written to the host's files. Persist these where the namespace is made — a file \
                 with the lines below, loaded in the script or unit that creates it \
                 (`{prefix}sysctl -p FILE`), or the container runtime's sysctl option (docker run \
                 --sysctl KEY=VALUE; Kubernetes: the pod's securityContext.sysctls):"
            );
            for (k, v) in child_keys {
                n.push_str(&format!("\n  {k} = {v}"));
            }
            self.p.notes.push(n);
        }
    }

    /// The text of one of tune's own files (or a sysctl.d file) now.
    fn ours_text(&self, path: &str) -> Option<String> {
        self.inp
            .boot
            .ours
            .get(&rel(path))
            .cloned()
            .flatten()
            .or_else(|| {
                self.inp
                    .boot
                    .texts
                    .sysctl_d
                    .iter()
                    .find(|(p, _)| *p == rel(path))
                    .map(|(_, t)| t.clone())
            })
    }

    /// The hash size: a module option (or the command line for a built-in
    /// nf_conntrack), and the max pinned beside it.
    fn persist_hashsize(&mut self, r: &mut Routed, w: &Writes) {
        let boot = &w.boot;
        let sysctl_persist = &mut r.sysctl_persist;
        let module_options = &mut r.module_options;
        if let Some(n) = r.buckets_persist {
            match self.inp.boot.module {
                Some(false) => push_once(
                    &mut self.p.by_hand,
                    cmdline_text("nf_conntrack.hashsize", &n.to_string()),
                ),
                m => {
                    if m.is_none() {
                        self.p.notes.push(format!(
                            "whether nf_conntrack is a module is unknown: for a built-in one put \
                         nf_conntrack.hashsize={n} on the kernel command line instead"
                        ));
                    }
                    module_options.push((change::MODPROBE_FILE.into(), n));
                }
            }
            // A boot hashsize makes the default max 8 × hashsize: pin max.
            let pinned = sysctl_persist.iter().any(|(k, _)| k == MAX_KEY)
                || boot.sysctl(MAX_KEY).0.is_some();
            let max_now = self
                .inp
                .facts
                .conntrack
                .as_ref()
                .ok()
                .and_then(|c| c.max.as_ref().ok());
            if let (false, Some(m)) = (pinned, max_now) {
                sysctl_persist.push((MAX_KEY.into(), m.to_string()));
                self.p.notes.push(format!(
                "{MAX_KEY} = {m} (its value now) is persisted too: a hash size given at boot makes \
                 the default max 8 × hashsize"
            ));
            }
        }
    }

    /// sysctls into our file, then whatever still wins after it (edited
    /// with --force), what boot will set, and the late-module trap.
    fn persist_sysctls(&mut self, r: &mut Routed, w: &mut Writes) {
        let sysctl_persist = &r.sysctl_persist;
        let boot_lines = &mut r.boot_lines;
        let edits = &mut w.edits;
        let boot = &mut w.boot;
        if !sysctl_persist.is_empty() {
            let path = rel(change::SYSCTL_FILE);
            let old = self.ours_text(change::SYSCTL_FILE);
            let mut text = old.clone();
            for (k, v) in sysctl_persist {
                text = Some(files::set_sysctl(text.as_deref(), k, v));
            }
            let new = text.unwrap_or_default();
            edits.put(
                &path,
                old.as_deref(),
                new.clone(),
                "persists the values (applied at boot by systemd-sysctl / sysctl --system)".into(),
            );
            boot.write(&path, new);
            for (k, v) in sysctl_persist {
                let (procps, systemd) = boot.sysctl(k);
                let mut winners: Vec<Setting> = Vec::new();
                for w in [procps, systemd].into_iter().flatten() {
                    if !winners.iter().any(|x| x.file == w.file && x.line == w.line) {
                        winners.push(w);
                    }
                }
                for w in winners {
                    if same(&w.value, v) || w.file == path {
                        continue;
                    }
                    let why = format!(
                    "{} sets {k} = {} and is applied after {}: the value would not survive a reboot",
                    self.inp.boot.place(&w),
                    w.value,
                    self.inp.boot.shown(change::SYSCTL_FILE)
                );
                    if !self.opts.force {
                        self.p.refusals.push(format!(
                        "{why}; edit it there, or run again with --force to have ctdoctor edit that line"
                    ));
                        continue;
                    }
                    let cur = edits
                        .current(&w.file, boot.text(&w.file))
                        .map(str::to_string);
                    match cur
                        .as_deref()
                        .and_then(|t| files::set_line_value(t, w.line, v))
                    {
                        Some(t) => {
                            let orig = self
                                .inp
                                .boot
                                .texts
                                .sysctl_d
                                .iter()
                                .find(|(p, _)| *p == w.file)
                                .map(|(_, t)| t.clone())
                                .or_else(|| {
                                    (w.file == crate::host::persist::SYSCTL_CONF)
                                        .then(|| self.inp.boot.texts.sysctl_conf.clone())
                                        .flatten()
                                });
                            self.p
                                .notes
                                .push(format!("(--force) {why}: line {} edited", w.line));
                            edits.put(
                                &w.file,
                                orig.as_deref(),
                                t.clone(),
                                format!("{k} set where it wins"),
                            );
                            boot.write(&w.file, t);
                        }
                        None => self
                            .p
                            .refusals
                            .push(format!("{why}; its line {} cannot be edited", w.line)),
                    }
                }
            }
            for (k, v) in sysctl_persist {
                self.p
                    .boot
                    .push(BootCheck::new(k, v, boot, &self.inp.boot.root));
            }
            // The late-module trap: net.netfilter keys skipped at boot.
            if self.inp.boot.module == Some(true)
                && !self.inp.boot.loads_early
                && sysctl_persist
                    .iter()
                    .any(|(k, _)| k.starts_with("net.netfilter."))
                && boot_lines.is_empty()
            {
                boot_lines.push((change::MODULES_LOAD_FILE.into(), "nf_conntrack".into()));
                self.p.notes.push(format!(
                "nf_conntrack is a module that nothing loads before systemd-sysctl: {} makes it \
                 load early, or the net.netfilter keys would be skipped at boot",
                change::MODULES_LOAD_FILE
            ));
            }
        }
    }

    /// modprobe.d options, and what would override them at boot.
    fn persist_module_options(&mut self, r: &Routed, w: &mut Writes) {
        let edits = &mut w.edits;
        let boot = &mut w.boot;
        for (file, n) in &r.module_options {
            let path = rel(file);
            let old = self
                .inp
                .boot
                .ours
                .get(&path)
                .cloned()
                .flatten()
                .or_else(|| {
                    self.inp
                        .boot
                        .texts
                        .modprobe_d
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, t)| t.clone())
                });
            let cur = edits.current(&path, old.as_deref()).map(str::to_string);
            let new = files::set_module_option(
                cur.as_deref(),
                "nf_conntrack",
                "hashsize",
                &n.to_string(),
            );
            edits.put(
                &path,
                old.as_deref(),
                new.clone(),
                "persists the hash size (nf_conntrack is a module)".into(),
            );
            boot.write(&path, new);
            if let Some(w) = boot
                .hashsize()
                .filter(|w| w.file != path && !same(&w.value, &n.to_string()))
            {
                self.forceable(format!(
                    "{} sets options nf_conntrack hashsize={} and is read after {}: the hash size \
                     would not survive a reboot",
                    self.inp.boot.place(&w),
                    w.value,
                    self.inp.boot.shown(change::MODPROBE_FILE)
                ));
            }
            if let Some(c) = &self.inp.boot.cmdline_hashsize {
                if !same(&c.value, &n.to_string()) {
                    self.forceable(format!(
                        "the kernel command line sets nf_conntrack.hashsize={}, which wins over \
                         modprobe.d at boot: change it there",
                        c.value
                    ));
                }
            }
        }
    }

    /// modules-load.d lines.
    fn persist_boot_lines(&mut self, r: &Routed, w: &mut Writes) {
        let edits = &mut w.edits;
        for (file, line) in &r.boot_lines {
            let path = rel(file);
            let old = self.inp.boot.ours.get(&path).cloned().flatten();
            let cur = edits.current(&path, old.as_deref()).map(str::to_string);
            let new = files::add_line(cur.as_deref(), line);
            edits.put(
                &path,
                old.as_deref(),
                new,
                format!("loads {line} before systemd-sysctl applies sysctl.d"),
            );
        }
    }

    /// The files to write, and what cannot be written.
    fn finish(mut self, edits: Edits) -> Plan {
        self.p.files = edits.into_writes();
        if self.opts.persist_only && !self.p.files.is_empty() {
            self.p.notes.push(format!(
            "--persist-only: nothing changes now; the values apply at the next boot (or now: sysctl -p {})",
            self.inp.boot.shown(change::SYSCTL_FILE)
        ));
        }
        for w in &self.p.files {
            if self
                .inp
                .boot
                .texts
                .unreadable
                .iter()
                .any(|(u, _)| *u == w.path)
            {
                self.p.refusals.push(format!(
                    "/{} cannot be read as text: edit it by hand",
                    w.path
                ));
            }
        }
        self.p
    }
}

fn push_once(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

fn cmdline_text(key: &str, value: &str) -> String {
    format!(
        "nf_conntrack is built in: add {key}={value} to the kernel command line \
         (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub); it applies at the next boot"
    )
}

/// The runtime half of one knob change.
#[allow(clippy::too_many_arguments)]
fn runtime_write(
    p: &mut Plan,
    inp: &Inputs<'_>,
    key: &str,
    path: &str,
    buckets: bool,
    value: &str,
    expect: &str,
    global: bool,
) {
    let candidates: Vec<&str> = if buckets {
        if key.ends_with("nf_conntrack_buckets") {
            vec![BUCKETS_PATH, HASHSIZE_PATH]
        } else {
            vec![HASHSIZE_PATH, BUCKETS_PATH]
        }
    } else {
        vec![path]
    };
    let mut why_not = Vec::new();
    for cand in &candidates {
        let Some(k) = inp.knobs.get(*cand) else {
            why_not.push(format!("/{cand} was not read"));
            continue;
        };
        let now = match &k.value {
            Ok(v) => v,
            Err(e) => {
                why_not.push(e.clone());
                continue;
            }
        };
        if same(now, expect) {
            p.unchanged.push(format!("{key} = {now}"));
            return;
        }
        if let Err(e) = &k.writable {
            why_not.push(e.clone());
            continue;
        }
        p.runtime.push(RuntimeWrite {
            key: key.to_string(),
            path: cand.to_string(),
            old: now.clone(),
            new: value.to_string(),
            expect: expect.to_string(),
            global,
        });
        return;
    }
    let mut why = format!("{key} cannot be set: {}", why_not.join("; "));
    if why_not.iter().any(|w| w.contains("read-only")) {
        why.push_str(
            " (in a container /proc/sys or /sys is often mounted read-only: run ctdoctor on the \
             host, or give the container a writable /sys; kube-proxy logs the same as \"/sys is \
             read-only: cannot modify conntrack limits\")",
        );
    }
    p.refusals.push(why);
}

/// Refuse (unless forced) a table whose worst case outgrows the share of
/// RAM check warns about, when the change makes it bigger.
fn memory_check(
    p: &mut Plan,
    inp: &Inputs<'_>,
    new_max: Option<u64>,
    new_buckets: Option<u64>,
    forceable: &impl Fn(&mut Plan, String),
) {
    if new_max.is_none() && new_buckets.is_none() {
        return;
    }
    let Some(ct) = inp.facts.conntrack.as_ref().ok() else {
        return;
    };
    let ram = inp
        .facts
        .system
        .as_ref()
        .ok()
        .and_then(|s| s.mem_total_bytes.as_ref().ok().copied())
        .unwrap_or(0);
    let (obj, measured) = suggest::objsize(inp.facts);
    let max = ct.max.as_ref().ok().copied().unwrap_or(0);
    let buckets = ct.buckets.as_ref().ok().copied().unwrap_or(0);
    let before = sizing::full_table_bytes(max, obj, buckets);
    let after =
        sizing::full_table_bytes(new_max.unwrap_or(max), obj, new_buckets.unwrap_or(buckets));
    if ram == 0 || after <= before {
        return;
    }
    let share = after as f64 / ram as f64;
    if share > suggest::MEMORY_WARN_SHARE {
        forceable(
            p,
            format!(
                "a full table would take {} = {:.0} % of RAM ({} entries × {} B{} × 1.5 for \
                 extensions + 8 B per bucket; kernel memory is never swapped), more than the \
                 {:.0} % conntrack.memory warns at",
                crate::util::bytes(after),
                share * 100.0,
                new_max.unwrap_or(max),
                obj,
                if measured { "" } else { " (assumed)" },
                suggest::MEMORY_WARN_SHARE * 100.0
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{read_facts, Root};
    use std::path::{Path, PathBuf};

    fn tree(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// What the edge would read, from a fixture tree: every knob writable
    /// unless listed in `read_only`.
    struct Fixture {
        facts: Facts,
        netns: NetnsRef,
        knobs: BTreeMap<String, KnobNow>,
        boot: BootFacts,
        kube_proxy: Vec<u32>,
    }

    fn fixture(name: &str, changes: &[Change], read_only: &[&str]) -> Fixture {
        let dir = tree(name);
        let facts = read_facts(&Root::live_at(dir.clone()));
        let knobs = knob_paths(changes)
            .into_iter()
            .map(|p| {
                let value = std::fs::read_to_string(dir.join(&p))
                    .map(|v| crate::knobs::normalize_value(&v))
                    .map_err(|e| format!("/{p}: {e}"));
                let writable = if read_only.contains(&p.as_str()) {
                    Err(format!("/{p} is on a read-only mount"))
                } else {
                    Ok(())
                };
                (p, KnobNow { value, writable })
            })
            .collect();
        let boot = super::super::apply::read_boot(&dir, &facts);
        let netns = NetnsRef {
            arg: suggest::netns_label(&facts),
            label: suggest::netns_label(&facts),
            inode: facts.netns.as_ref().ok().and_then(|n| n.inode),
            is_init: facts.is_init(),
        };
        Fixture {
            facts,
            netns,
            knobs,
            boot,
            kube_proxy: Vec::new(),
        }
    }

    fn run(name: &str, changes: &[Change], opts: Options) -> Plan {
        run_with(fixture(name, changes, &[]), changes, opts)
    }

    fn run_with(f: Fixture, changes: &[Change], opts: Options) -> Plan {
        plan(
            changes,
            &Inputs {
                facts: &f.facts,
                netns: &f.netns,
                knobs: &f.knobs,
                boot: &f.boot,
                kube_proxy: &f.kube_proxy,
            },
            opts,
        )
    }

    fn host(key: &str, v: impl ToString) -> Change {
        Change::knob(key, v, None)
    }

    const OURS: &str = "etc/sysctl.d/90-ctdoctor.conf";

    /// persist-precedence with a file that sorts after ours.
    fn precedence(changes: &[Change]) -> Fixture {
        let mut f = fixture("persist-precedence", changes, &[]);
        f.boot.texts.sysctl_d.push((
            "usr/lib/sysctl.d/95-vendor.conf".into(),
            "# vendor\nnet/netfilter/nf_conntrack_max = 524288\n".into(),
        ));
        f
    }

    #[test]
    fn a_later_file_and_sysctl_conf_refuse_and_force_edits_where_they_win() {
        let changes = [
            host("nf_conntrack_max", 1_048_576),
            host("tcp_timeout_time_wait", 45),
        ];
        let p = run_with(precedence(&changes), &changes, Options::default());
        assert_eq!(p.refusals.len(), 2, "{:#?}", p.refusals);
        assert!(
            p.refusals[0].contains(
                "/usr/lib/sysctl.d/95-vendor.conf:2 sets net.netfilter.nf_conntrack_max = 524288"
            ),
            "{}",
            p.refusals[0]
        );
        assert!(
            p.refusals[1].contains(
                "/etc/sysctl.conf:2 sets net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30"
            ),
            "{}",
            p.refusals[1]
        );
        // The same override check's render context names (one precedence
        // logic; 60-later.conf sorts before ours and is no override).
        let ctx = suggest::render_context(&run_fixture_facts("persist-precedence"));
        assert!(!ctx.overrides.iter().any(|o| o.key.ends_with("_max")));
        let key = "net.netfilter.nf_conntrack_tcp_timeout_time_wait";
        let o = ctx.overrides.iter().find(|o| o.key == key).expect(key);
        assert!(
            p.refusals
                .iter()
                .any(|r| r.contains(&format!("{}:{}", o.file, o.line))),
            "{key}: {o:?}"
        );
        // --force: the winning lines are edited, and boot then sets the values.
        let p = run_with(
            precedence(&changes),
            &changes,
            Options {
                force: true,
                ..Options::default()
            },
        );
        assert!(p.refusals.is_empty(), "{:#?}", p.refusals);
        let paths: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [OURS, "usr/lib/sysctl.d/95-vendor.conf", "etc/sysctl.conf"]
        );
        assert!(p.files[1]
            .new
            .contains("net/netfilter/nf_conntrack_max = 1048576"));
        assert!(p.boot.iter().all(|b| b.ok), "{:#?}", p.boot);
        // Runtime values are read from the tree.
        let tw = p
            .runtime
            .iter()
            .find(|r| r.key.ends_with("time_wait"))
            .unwrap();
        assert_eq!((tw.old.as_str(), tw.new.as_str()), ("30", "45"));
    }

    fn run_fixture_facts(name: &str) -> Facts {
        read_facts(&Root::live_at(tree(name)))
    }

    #[test]
    fn a_glob_in_a_later_file_does_not_override_an_explicit_assignment() {
        // run/sysctl.d/70-glob.conf: net.netfilter.nf_conntrack_tcp_timeout_est* = 600.
        let p = run(
            "persist-precedence",
            &[host("tcp_timeout_established", 7875)],
            Options::default(),
        );
        assert!(p.refusals.is_empty(), "{:#?}", p.refusals);
        assert!(p.boot[0]
            .procps
            .as_ref()
            .unwrap()
            .0
            .ends_with(&format!("/{OURS}:2")));
    }

    #[test]
    fn a_child_netns_gets_runtime_values_only_and_global_keys_are_refused() {
        let p = run(
            "persist-child-netns",
            &[Change::knob("tcp_timeout_time_wait", 15, Some("gw"))],
            Options::default(),
        );
        assert!(p.refusals.is_empty(), "{:#?}", p.refusals);
        assert_eq!(p.runtime.len(), 1);
        assert!(
            p.files.is_empty(),
            "never the host's files for a child netns"
        );
        assert!(
            p.notes[0].contains("ip netns exec gw sysctl -p FILE"),
            "{}",
            p.notes[0]
        );
        // A child netns of 5.13+ (and 5.4.120, 5.10.38) sees max read-only:
        // refused, with the reason read from the file, not assumed.
        let changes = [
            Change::knob("tcp_timeout_time_wait", 15, Some("gw")),
            host("nf_conntrack_max", 1),
        ];
        let max = "proc/sys/net/netfilter/nf_conntrack_max";
        let p = run_with(
            fixture("persist-child-netns", &changes, &[max]),
            &changes,
            Options::default(),
        );
        assert_eq!(p.refusals.len(), 1);
        assert!(
            p.refusals[0].contains(
                "cannot be set from a child netns such as gw (/proc/sys/net/netfilter/\
                 nf_conntrack_max is on a read-only mount)"
            ),
            "{}",
            p.refusals[0]
        );
        // A kernel that lets a child set its own max (nf-next): written
        // there, as this netns's own limit, and said.
        let p = run("persist-child-netns", &changes, Options::default());
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        let w = p.runtime.iter().find(|w| w.path == max).unwrap();
        assert!(!w.global, "{w:?}");
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("lets a child netns set its own value")),
            "{:?}",
            p.notes
        );
        let p = run(
            "persist-child-netns",
            &[Change::knob("tcp_timeout_time_wait", 15, Some("gw"))],
            Options {
                persist_only: true,
                ..Options::default()
            },
        );
        assert!(
            p.refusals[0].contains("never reads /etc/sysctl.d"),
            "{:?}",
            p.refusals
        );
    }

    #[test]
    fn the_hash_size_persists_by_module_option_or_by_hand_and_pins_max() {
        // A module: modprobe.d, and max pinned in sysctl.d.
        let p = run(
            "persist-hashsize-modprobe",
            &[host("hashsize", 262_144)],
            Options::default(),
        );
        assert!(p.refusals.is_empty(), "{:#?}", p.refusals);
        let m = p
            .files
            .iter()
            .find(|f| f.path == "etc/modprobe.d/ctdoctor.conf")
            .unwrap_or_else(|| panic!("no modprobe file: {p:#?}"));
        assert_eq!(m.new, "options nf_conntrack hashsize=262144\n");
        let s = p.files.iter().find(|f| f.path == OURS).unwrap();
        assert!(
            s.new.contains("net.netfilter.nf_conntrack_max = "),
            "{}",
            s.new
        );
        // Built in, with a hashsize on the command line: printed, not edited.
        let p = run(
            "persist-hashsize-cmdline",
            &[host("hashsize", 262_144)],
            Options::default(),
        );
        assert!(
            p.by_hand[0].contains("nf_conntrack.hashsize=262144"),
            "{:?}",
            p.by_hand
        );
        assert!(p.files.iter().all(|f| !f.path.contains("modprobe")));
    }

    #[test]
    fn a_read_only_sys_falls_back_to_the_buckets_sysctl_and_then_refuses() {
        let changes = [host("hashsize", 524_288)];
        let f = fixture("persist-precedence", &changes, &[HASHSIZE_PATH]);
        let p = run_with(f, &changes, Options::default());
        assert_eq!(p.runtime[0].path, BUCKETS_PATH, "{:#?}", p);
        let f = fixture(
            "persist-precedence",
            &changes,
            &[HASHSIZE_PATH, BUCKETS_PATH],
        );
        let p = run_with(f, &changes, Options::default());
        assert!(p.refusals[0].contains("read-only"), "{:?}", p.refusals);
        assert!(p.refusals[0].contains("container"), "{:?}", p.refusals);
    }

    #[test]
    fn kube_proxy_refuses_its_keys_only() {
        let changes = [
            host("nf_conntrack_max", 600_000),
            host("tcp_timeout_time_wait", 45),
        ];
        let mut f = fixture("persist-module-early", &changes, &[]);
        f.kube_proxy = vec![4242];
        let p = run_with(f, &changes, Options::default());
        assert_eq!(p.refusals.len(), 1, "{:#?}", p.refusals);
        assert!(p.refusals[0].contains("kube-proxy runs here (pid 4242)"));
        assert!(p.refusals[0].contains("nf_conntrack_max"));
    }

    #[test]
    fn a_table_that_would_not_fit_ram_is_refused_unless_forced() {
        // 1 GiB of RAM: 16M entries would take gigabytes.
        let changes = [host("nf_conntrack_max", 16_000_000)];
        let p = run("ct-small-ram", &changes, Options::default());
        assert!(
            p.refusals.iter().any(|r| r.contains("% of RAM")),
            "{:#?}",
            p.refusals
        );
        let p = run(
            "ct-small-ram",
            &changes,
            Options {
                force: true,
                ..Options::default()
            },
        );
        assert!(!p.refusals.iter().any(|r| r.contains("% of RAM")));
        assert!(p.notes.iter().any(|n| n.starts_with("(--force)")));
    }

    #[test]
    fn a_late_module_gets_loaded_early() {
        let p = run(
            "persist-module-late",
            &[host("tcp_timeout_time_wait", 30)],
            Options::default(),
        );
        let m = p
            .files
            .iter()
            .find(|f| f.path == "etc/modules-load.d/ctdoctor.conf")
            .unwrap_or_else(|| panic!("no modules-load.d file: {p:#?}"));
        assert_eq!(m.new, "nf_conntrack\n");
    }

    #[test]
    fn runtime_only_and_persist_only_split_the_work() {
        let c = [host("tcp_timeout_time_wait", 45)];
        let r = run(
            "persist-module-early",
            &c,
            Options {
                runtime_only: true,
                ..Options::default()
            },
        );
        assert_eq!((r.runtime.len(), r.files.len()), (1, 0));
        let p = run(
            "persist-module-early",
            &c,
            Options {
                persist_only: true,
                ..Options::default()
            },
        );
        assert_eq!((p.runtime.len(), p.files.len()), (0, 1));
        // A value already in place is not written again.
        let now = run_fixture_facts("persist-module-early")
            .conntrack
            .unwrap()
            .timeout("tcp_timeout_time_wait")
            .unwrap();
        let u = run(
            "persist-module-early",
            &[host("tcp_timeout_time_wait", now)],
            Options {
                runtime_only: true,
                ..Options::default()
            },
        );
        assert!(u.runtime.is_empty() && u.unchanged.len() == 1, "{u:#?}");
    }

    #[test]
    fn bad_values_and_rulesets_are_refused() {
        let p = run(
            "persist-module-early",
            &[
                host("tcp_timeout_time_wait", "soon"),
                Change::ruleset("table x {}", None),
            ],
            Options::default(),
        );
        assert_eq!(p.refusals.len(), 2, "{:#?}", p.refusals);
        assert!(p.refusals[0].contains("not a whole number"));
        assert!(p.refusals[1].contains("notrack"));
    }
}

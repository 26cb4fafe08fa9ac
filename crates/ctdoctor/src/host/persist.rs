//! What the next boot will set, next to what is set now: the conntrack and
//! companion sysctls from sysctl.d / sysctl.conf (with the file and line),
//! `hashsize` from modprobe.d and the kernel command line, whether
//! nf_conntrack is built in or a module, and whether modules-load.d loads
//! it early.
//!
//! Precedence implemented (procps-ng 4.0.2 sysctl(8) "SYSTEM FILE
//! PRECEDENCE" and systemd 252 sysctl.d(5) "CONFIGURATION DIRECTORIES AND
//! PRECEDENCE"): `*.conf` files are collected from /etc/sysctl.d,
//! /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d,
//! /lib/sysctl.d in that order; a basename seen in an earlier directory
//! masks the same basename in later ones (a symlink to /dev/null is an
//! empty file and so masks too); the survivors are applied in byte order of
//! their basename regardless of directory; the last assignment of a key
//! wins. procps `sysctl --system` then applies /etc/sysctl.conf last;
//! systemd-sysctl does not read /etc/sysctl.conf (distributions link it as
//! /etc/sysctl.d/99-sysctl.conf), so both results are kept. Keys:
//! `a.b.c` or `a/b/c` (if the first separator is a dot, dots and slashes
//! swap); leading `-` = ignore errors; `#`/`;` comments; values trimmed,
//! compared whitespace-normalised. Globs (`*`, `?`) follow systemd: a key
//! with an explicit assignment anywhere is never set by a glob; `-key`
//! without `=` excludes the key from globs; `[...]` classes are not
//! supported (such a pattern never matches).
//!
//! modprobe.d: the same masking over /etc, /run, /usr/local/lib, /usr/lib,
//! /lib `modprobe.d/*.conf`; the last `options nf_conntrack hashsize=N`
//! wins. Kernel command line `nf_conntrack.hashsize=N` (before `--`).
//!
//! Also the exact texts of those files ([`read_texts`]), on which `tune`
//! simulates its edits with the same precedence rules, and whether
//! kube-proxy runs ([`kube_proxy_pids`]).
//!
//! Not for: judging (checks/persist.rs) or writing config (tune).

use super::{Fact, Root, Unavailable};
use serde::{Deserialize, Serialize};

/// sysctl.d directories, highest precedence first.
pub const SYSCTL_DIRS: &[&str] = &[
    "etc/sysctl.d",
    "run/sysctl.d",
    "usr/local/lib/sysctl.d",
    "usr/lib/sysctl.d",
    "lib/sysctl.d",
];
/// Applied last by procps `sysctl --system` only.
pub const SYSCTL_CONF: &str = "etc/sysctl.conf";
/// modprobe.d directories, highest precedence first.
pub const MODPROBE_DIRS: &[&str] = &[
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];
/// modules-load.d directories, highest precedence first (+ /etc/modules).
pub const MODULES_LOAD_DIRS: &[&str] = &[
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
];

/// Companion keys read besides every net.netfilter.nf_conntrack_* that
/// exists: every other sysctl in [`crate::knobs::KNOBS`] (what ctdoctor
/// may suggest), in path form.
pub fn extra_keys() -> impl Iterator<Item = String> {
    crate::knobs::KNOBS
        .iter()
        .filter(|k| k.is_sysctl() && !k.key.starts_with("net.netfilter."))
        .filter_map(|k| k.path.strip_prefix("proc/sys/").map(str::to_string))
}

/// Whether a key (path form) is one value for the whole machine (read-only
/// or shared in a child netns): a child netns sees the init netns's value.
pub fn is_global(path: &str) -> bool {
    crate::knobs::lookup(path).is_ok_and(|k| k.scope == crate::knobs::KnobScope::Global)
}

/// Modules whose loading pulls nf_conntrack in as a dependency: listing
/// one of them in modules-load.d loads nf_conntrack early too.
pub const PULLS_IN_CONNTRACK: &[&str] = &[
    "nf_conntrack",
    "nf_nat",
    "xt_conntrack",
    "xt_state",
    "nft_ct",
    "nft_nat",
    "nft_masq",
    "nft_chain_nat",
    "xt_MASQUERADE",
    "xt_nat",
    "iptable_nat",
    "ip6table_nat",
    "br_netfilter",
    "openvswitch",
    "ip_vs",
    "nf_conntrack_netlink",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persist {
    /// Keys of interest, in path form order.
    pub sysctls: Vec<SysctlKey>,
    /// sysctl files in the order procps applies them (the last is
    /// etc/sysctl.conf when it exists).
    pub sysctl_files: Vec<String>,
    pub hashsize: Hashsize,
    pub module: Fact<ModuleState>,
    /// modules-load.d (and /etc/modules, `modules-load=` on the command
    /// line) entries that load nf_conntrack, directly or as a dependency.
    pub modules_load: Vec<Setting>,
    /// Pids of running kube-proxy processes ([`kube_proxy_pids`]): it
    /// re-applies its own values at every start, over sysctl.d.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kube_proxy: Vec<u32>,
}

impl Persist {
    /// The hashsize boot asks for: the command line wins over modprobe.d
    /// (the kernel applies `nf_conntrack.hashsize=` to a module too, after
    /// modprobe's options); modprobe.d only counts for a module.
    pub fn boot_hashsize(&self) -> Option<(u64, &Setting)> {
        let module_ok = !matches!(self.module, Ok(ModuleState::BuiltIn { .. }));
        let s = self.hashsize.cmdline.as_ref().or(self
            .hashsize
            .modprobe
            .as_ref()
            .filter(|_| module_ok))?;
        s.value
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| (n, s))
    }
}

/// One sysctl: its value now and what boot sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SysctlKey {
    /// Path form, as under /proc/sys: `net/netfilter/nf_conntrack_max`.
    pub path: String,
    /// Whitespace-normalised value now.
    pub runtime: Fact<String>,
    /// What `sysctl --system` (procps, /etc/sysctl.conf last) sets at boot.
    pub boot: Option<Setting>,
    /// What systemd-sysctl sets (no /etc/sysctl.conf), when it differs
    /// from `boot`.
    pub boot_systemd: Option<Setting>,
}

impl SysctlKey {
    /// `net.netfilter.nf_conntrack_max`.
    pub fn dotted(&self) -> String {
        dotted(&self.path)
    }
}

/// `net/netfilter/x` -> `net.netfilter.x`.
pub fn dotted(path: &str) -> String {
    path.replace('/', ".")
}

/// A value and where it is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub value: String,
    /// Relative path (`etc/sysctl.d/90-x.conf`, `proc/cmdline`).
    pub file: String,
    /// 1-based line (0 for the command line).
    pub line: u32,
    /// Set through a glob pattern (`net.netfilter.*_timeout = 5`).
    #[serde(default)]
    pub glob: bool,
}

impl Setting {
    /// `/etc/sysctl.d/90-x.conf:3`.
    pub fn place(&self) -> String {
        if self.line == 0 {
            format!("/{}", self.file)
        } else {
            format!("/{}:{}", self.file, self.line)
        }
    }
}

/// The hash table size: now, and what boot asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashsize {
    /// /proc/sys/net/netfilter/nf_conntrack_buckets.
    pub runtime_buckets: Fact<u64>,
    /// /sys/module/nf_conntrack/parameters/hashsize.
    pub runtime_param: Fact<u64>,
    /// Last `options nf_conntrack hashsize=N` in modprobe.d (modules only).
    pub modprobe: Option<Setting>,
    /// `nf_conntrack.hashsize=N` on the kernel command line.
    pub cmdline: Option<Setting>,
}

/// How nf_conntrack is in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModuleState {
    BuiltIn { how: String },
    Module { loaded: bool, how: String },
}

impl ModuleState {
    pub fn is_module(&self) -> bool {
        matches!(self, ModuleState::Module { .. })
    }
}

/// One assignment line of a sysctl file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    /// Path form (`net/netfilter/...`), possibly a glob.
    pub key: String,
    /// None for a `-key` glob exclusion.
    pub value: Option<String>,
    pub line: u32,
    pub ignore_errors: bool,
}

/// Normalise a sysctl key to path form (systemd's rule: if the first
/// separator is a dot, dots and slashes swap; if it is a slash, the key is
/// a path already).
pub fn normalize_key(key: &str) -> String {
    let key = key.trim().trim_start_matches('/');
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

pub use crate::knobs::normalize_value;

/// Parse one sysctl.conf / sysctl.d file. Lines that are neither an
/// assignment nor a `-key` exclusion are skipped.
pub fn parse_sysctl_conf(text: &str) -> Vec<Assign> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (line, ignore_errors) = match line.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let (key, value) = match line.split_once('=') {
            Some((_, v)) if v.trim().is_empty() => continue,
            Some((k, v)) => (k.trim(), Some(normalize_value(v))),
            None if ignore_errors => (line.trim(), None),
            None => continue,
        };
        if key.is_empty() {
            continue;
        }
        out.push(Assign {
            key: normalize_key(key),
            value,
            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
            ignore_errors,
        });
    }
    out
}

/// Glob match with `*` and `?` (`*` also matches `/`, as fnmatch without
/// FNM_PATHNAME). A pattern with `[` never matches (unsupported).
pub fn glob_match(pat: &str, s: &str) -> bool {
    if pat.contains('[') {
        return false;
    }
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    // Iterative wildcard match with backtracking on the last '*'.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// A parsed file in application order.
#[derive(Debug, Clone)]
pub struct ConfFile {
    pub path: String,
    pub assigns: Vec<Assign>,
}

/// The value boot gives `key` from `files` (in application order):
/// the last explicit assignment; otherwise the last matching glob unless
/// a `-key` line excludes the key.
pub fn resolve(files: &[ConfFile], key: &str) -> Option<Setting> {
    let mut explicit = None;
    let mut globbed = None;
    let mut excluded = false;
    for f in files {
        for a in &f.assigns {
            let glob = is_glob(&a.key);
            let hit = if glob {
                glob_match(&a.key, key)
            } else {
                a.key == key
            };
            if !hit {
                continue;
            }
            match (&a.value, glob) {
                (None, false) => excluded = true,
                (None, true) => {}
                (Some(v), g) => {
                    let s = Setting {
                        value: v.clone(),
                        file: f.path.clone(),
                        line: a.line,
                        glob: g,
                    };
                    if g {
                        globbed = Some(s);
                    } else {
                        explicit = Some(s);
                    }
                }
            }
        }
    }
    explicit.or(if excluded { None } else { globbed })
}

/// The files of `dirs` that apply, by the masking rule: each basename
/// (ending in `.conf`) taken from the first directory that has it, then
/// sorted by basename. Returns relative paths.
pub fn collect_conf_files(listing: &[(&str, Vec<String>)]) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for (dir, names) in listing {
        for n in names {
            if n.len() > 5 && n.ends_with(".conf") && !seen.contains_key(n) {
                seen.insert(n.clone(), format!("{dir}/{n}"));
            }
        }
    }
    // BTreeMap iterates in byte order of the basename (strcmp order).
    seen.into_values().collect()
}

fn list_conf_files(root: &Root, dirs: &[&str]) -> Vec<String> {
    let listing: Vec<(&str, Vec<String>)> = dirs
        .iter()
        .map(|d| (*d, root.list_dir(d).unwrap_or_default()))
        .collect();
    collect_conf_files(&listing)
}

/// `options nf_conntrack hashsize=N` lines of one modprobe.d file (module
/// names compare with `-` = `_`; `\` continues a line). The last wins.
pub fn parse_modprobe_hashsize(text: &str, file: &str) -> Option<Setting> {
    let mut found = None;
    let mut joined = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        if joined.is_empty() {
            start_line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        }
        match raw.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                continue;
            }
            None => joined.push_str(raw),
        }
        let line = std::mem::take(&mut joined);
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut w = line.split_whitespace();
        if w.next() != Some("options") {
            continue;
        }
        if w.next().map(|m| m.replace('-', "_")).as_deref() != Some("nf_conntrack") {
            continue;
        }
        for opt in w {
            if let Some(v) = opt.strip_prefix("hashsize=") {
                found = Some(Setting {
                    value: v.trim_matches('"').to_string(),
                    file: file.to_string(),
                    line: start_line,
                    glob: false,
                });
            }
        }
    }
    found
}

/// `nf_conntrack.hashsize=N` on the kernel command line (parameters after
/// `--` go to init, not the kernel). The last wins.
pub fn parse_cmdline_hashsize(cmdline: &str) -> Option<Setting> {
    let mut found = None;
    for w in cmdline.split_whitespace() {
        if w == "--" {
            break;
        }
        let Some((k, v)) = w.split_once('=') else {
            continue;
        };
        if k.replace('-', "_") == "nf_conntrack.hashsize" {
            found = Some(Setting {
                value: v.trim_matches('"').to_string(),
                file: "proc/cmdline".into(),
                line: 0,
                glob: false,
            });
        }
    }
    found
}

/// Lines of a modules-load.d file (or /etc/modules) naming a module that
/// loads nf_conntrack.
pub fn parse_modules_load(text: &str, file: &str) -> Vec<Setting> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim();
            if l.starts_with('#') || l.starts_with(';') {
                return None;
            }
            let m = l.split_whitespace().next()?.replace('-', "_");
            PULLS_IN_CONNTRACK.contains(&m.as_str()).then(|| Setting {
                value: m,
                file: file.to_string(),
                line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                glob: false,
            })
        })
        .collect()
}

/// `modules-load=a,b` / `rd.modules-load=` on the command line.
pub fn parse_cmdline_modules_load(cmdline: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    for w in cmdline.split_whitespace() {
        if w == "--" {
            break;
        }
        let Some(list) = w
            .strip_prefix("modules-load=")
            .or_else(|| w.strip_prefix("rd.modules-load="))
        else {
            continue;
        };
        for m in list.split(',') {
            let m = m.replace('-', "_");
            if PULLS_IN_CONNTRACK.contains(&m.as_str()) {
                out.push(Setting {
                    value: m,
                    file: "proc/cmdline".into(),
                    line: 0,
                    glob: false,
                });
            }
        }
    }
    out
}

/// Whether `modules.builtin` lists nf_conntrack.
pub fn builtin_lists_conntrack(modules_builtin: &str) -> bool {
    modules_builtin
        .lines()
        .any(|l| l.trim().rsplit('/').next() == Some("nf_conntrack.ko"))
}

/// Work out how nf_conntrack is in the kernel.
pub fn module_state(root: &Root) -> Fact<ModuleState> {
    let modules = root.read_text("proc/modules");
    if let Ok(m) = &modules {
        if super::consumers::parse_proc_modules(m)
            .iter()
            .any(|x| x.name == "nf_conntrack")
        {
            return Ok(ModuleState::Module {
                loaded: true,
                how: "listed in /proc/modules".into(),
            });
        }
    }
    if let Ok(entries) = root.list_dir("sys/module/nf_conntrack") {
        // A loadable module has initstate and refcnt there; a built-in one
        // only its parameters (the same rule host::conntrack uses).
        return Ok(
            if entries.iter().any(|e| e == "initstate" || e == "refcnt") {
                ModuleState::Module {
                    loaded: true,
                    how: "/sys/module/nf_conntrack/initstate or refcnt exists".into(),
                }
            } else {
                ModuleState::BuiltIn {
                    how: "/sys/module/nf_conntrack has no initstate or refcnt".into(),
                }
            },
        );
    }
    let release = root
        .read_text("proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string());
    if let Ok(rel) = &release {
        let path = format!("lib/modules/{rel}/modules.builtin");
        if let Ok(b) = root.read_text(&path) {
            return Ok(if builtin_lists_conntrack(&b) {
                ModuleState::BuiltIn {
                    how: format!("listed in /{path}"),
                }
            } else {
                ModuleState::Module {
                    loaded: false,
                    how: format!("not in /{path}, not loaded"),
                }
            });
        }
    }
    match modules {
        Ok(_) => Ok(ModuleState::Module {
            loaded: false,
            how: "not in /proc/modules, no /sys/module/nf_conntrack".into(),
        }),
        Err(_) => Err(Unavailable::Missing {
            what: "nf_conntrack: neither /proc/modules, /sys/module/nf_conntrack nor modules.builtin tells".into(),
        }),
    }
}

/// Parsed files in application order: sysctl.d survivors, then (procps
/// only) /etc/sysctl.conf.
fn read_conf_files(root: &Root, paths: &[String]) -> Vec<ConfFile> {
    paths
        .iter()
        .filter_map(|p| {
            let text = root.read_text(p).ok()?;
            Some(ConfFile {
                path: p.clone(),
                assigns: parse_sysctl_conf(&text),
            })
        })
        .collect()
}

/// The exact texts of the boot files `tune` simulates its edits on: the
/// sysctl files in application order and the modprobe.d files that apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootTexts {
    /// sysctl.d files that apply (masking done), in application order:
    /// (relative path, text).
    pub sysctl_d: Vec<(String, String)>,
    /// etc/sysctl.conf, applied last by procps `sysctl --system` only.
    pub sysctl_conf: Option<String>,
    /// modprobe.d files that apply, in order.
    pub modprobe_d: Vec<(String, String)>,
    /// Files listed but not readable as UTF-8 text: (relative path, why).
    pub unreadable: Vec<(String, String)>,
}

/// A file's exact text: None when it does not exist; an error (with the
/// path) when it cannot be read or is not UTF-8 — never a lossy copy, since
/// tune writes these files back.
pub fn read_exact(root: &Root, path: &str) -> Result<Option<String>, String> {
    match root.read(path) {
        Ok(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("/{path}: not UTF-8 text")),
        Err(Unavailable::Missing { .. }) => Ok(None),
        Err(u) => Err(u.to_string()),
    }
}

/// Read [`BootTexts`] through `root`.
pub fn read_texts(root: &Root) -> BootTexts {
    let mut t = BootTexts::default();
    let texts = |paths: Vec<String>, unreadable: &mut Vec<(String, String)>| {
        paths
            .into_iter()
            .filter_map(|p| match read_exact(root, &p) {
                Ok(Some(text)) => Some((p, text)),
                Ok(None) => None,
                Err(e) => {
                    unreadable.push((p, e));
                    None
                }
            })
            .collect::<Vec<_>>()
    };
    t.sysctl_d = texts(list_conf_files(root, SYSCTL_DIRS), &mut t.unreadable);
    t.modprobe_d = texts(list_conf_files(root, MODPROBE_DIRS), &mut t.unreadable);
    match read_exact(root, SYSCTL_CONF) {
        Ok(c) => t.sysctl_conf = c,
        Err(e) => t.unreadable.push((SYSCTL_CONF.into(), e)),
    }
    t
}

/// Pids of running processes named `kube-proxy`: it writes
/// nf_conntrack_max, the hash size and two timeouts at every start, over
/// whatever sysctl.d says.
pub fn kube_proxy_pids(root: &Root) -> Vec<u32> {
    let mut pids: Vec<u32> = root
        .list_dir("proc")
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.parse::<u32>().ok())
        .filter(|pid| {
            root.read_text(&format!("proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "kube-proxy")
        })
        .collect();
    pids.sort_unstable();
    pids
}

pub fn read(root: &Root) -> Fact<Persist> {
    let mut keys: Vec<String> = root
        .list_dir("proc/sys/net/netfilter")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("nf_conntrack_") && n != "nf_conntrack_count")
        .map(|n| format!("net/netfilter/{n}"))
        .collect();
    keys.extend(extra_keys());

    let mut d_files = list_conf_files(root, SYSCTL_DIRS);
    let systemd_files = read_conf_files(root, &d_files);
    let mut procps_files = systemd_files.clone();
    if let Ok(text) = root.read_text(SYSCTL_CONF) {
        procps_files.push(ConfFile {
            path: SYSCTL_CONF.into(),
            assigns: parse_sysctl_conf(&text),
        });
        d_files.push(SYSCTL_CONF.into());
    }

    let sysctls = keys
        .into_iter()
        .map(|path| {
            let runtime = root
                .read_text(&format!("proc/sys/{path}"))
                .map(|v| normalize_value(&v));
            let boot = resolve(&procps_files, &path);
            let sd = resolve(&systemd_files, &path);
            let boot_systemd = if sd.as_ref().map(|s| &s.value) != boot.as_ref().map(|s| &s.value) {
                sd
            } else {
                None
            };
            SysctlKey {
                path,
                runtime,
                boot,
                boot_systemd,
            }
        })
        .collect();

    let modprobe = list_conf_files(root, MODPROBE_DIRS)
        .iter()
        .filter_map(|p| {
            root.read_text(p)
                .ok()
                .and_then(|t| parse_modprobe_hashsize(&t, p))
        })
        .last();
    let cmdline = root.read_text("proc/cmdline").unwrap_or_default();
    let hashsize = Hashsize {
        runtime_buckets: super::read_u64(root, "proc/sys/net/netfilter/nf_conntrack_buckets"),
        runtime_param: super::read_u64(root, "sys/module/nf_conntrack/parameters/hashsize"),
        modprobe,
        cmdline: parse_cmdline_hashsize(&cmdline),
    };

    let mut modules_load: Vec<Setting> = list_conf_files(root, MODULES_LOAD_DIRS)
        .iter()
        .filter_map(|p| root.read_text(p).ok().map(|t| parse_modules_load(&t, p)))
        .flatten()
        .collect();
    if let Ok(t) = root.read_text("etc/modules") {
        modules_load.extend(parse_modules_load(&t, "etc/modules"));
    }
    modules_load.extend(parse_cmdline_modules_load(&cmdline));

    Ok(Persist {
        sysctls,
        sysctl_files: d_files,
        hashsize,
        module: module_state(root),
        modules_load,
        kube_proxy: kube_proxy_pids(root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_forms() {
        assert_eq!(
            normalize_key("net.netfilter.nf_conntrack_max"),
            "net/netfilter/nf_conntrack_max"
        );
        assert_eq!(
            normalize_key("net/netfilter/nf_conntrack_max"),
            "net/netfilter/nf_conntrack_max"
        );
        // systemd's examples: a dot in an interface name.
        assert_eq!(
            normalize_key("net.ipv4.conf.enp3s0/200.forwarding"),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(
            normalize_key("net/ipv4/conf/enp3s0.200/forwarding"),
            "net/ipv4/conf/enp3s0.200/forwarding"
        );
        assert_eq!(normalize_key("fs.file-max"), "fs/file-max");
    }

    #[test]
    fn conf_syntax() {
        let t = "# comment\n; also\n\n  net.netfilter.nf_conntrack_max   =   524288  \n\
                 -net.netfilter.nf_conntrack_tcp_timeout_time_wait=30\n\
                 net.ipv4.ip_local_port_range = 1024\t  65000\n\
                 garbage line\n=novalue\n-net.netfilter.nf_conntrack_acct\n\
                 net/core/somaxconn = 8192\n";
        let a = parse_sysctl_conf(t);
        assert_eq!(
            a,
            vec![
                Assign {
                    key: "net/netfilter/nf_conntrack_max".into(),
                    value: Some("524288".into()),
                    line: 4,
                    ignore_errors: false
                },
                Assign {
                    key: "net/netfilter/nf_conntrack_tcp_timeout_time_wait".into(),
                    value: Some("30".into()),
                    line: 5,
                    ignore_errors: true
                },
                Assign {
                    key: "net/ipv4/ip_local_port_range".into(),
                    value: Some("1024 65000".into()),
                    line: 6,
                    ignore_errors: false
                },
                Assign {
                    key: "net/netfilter/nf_conntrack_acct".into(),
                    value: None,
                    line: 9,
                    ignore_errors: true
                },
                Assign {
                    key: "net/core/somaxconn".into(),
                    value: Some("8192".into()),
                    line: 10,
                    ignore_errors: false
                },
            ]
        );
    }

    #[test]
    fn masking_and_order() {
        let listing = vec![
            (
                "etc/sysctl.d",
                vec!["50-a.conf".into(), "README".into(), "99-z.conf".into()],
            ),
            ("run/sysctl.d", vec![]),
            (
                "usr/lib/sysctl.d",
                vec!["50-a.conf".into(), "10-b.conf".into(), ".conf".into()],
            ),
            ("lib/sysctl.d", vec!["60-c.conf".into(), "10-b.conf".into()]),
        ];
        assert_eq!(
            collect_conf_files(&listing),
            vec![
                "usr/lib/sysctl.d/10-b.conf",
                "etc/sysctl.d/50-a.conf",
                "lib/sysctl.d/60-c.conf",
                "etc/sysctl.d/99-z.conf"
            ]
        );
    }

    fn file(path: &str, text: &str) -> ConfFile {
        ConfFile {
            path: path.into(),
            assigns: parse_sysctl_conf(text),
        }
    }

    #[test]
    fn globs_and_exclusions() {
        let k = "net/netfilter/nf_conntrack_tcp_timeout_time_wait";
        let files = vec![
            file(
                "a",
                "net.netfilter.nf_conntrack_tcp_timeout_time_wait = 30\n",
            ),
            file("b", "net.netfilter.nf_conntrack_tcp_timeout_* = 5\n"),
        ];
        // Explicit beats a later glob.
        assert_eq!(resolve(&files, k).unwrap().value, "30");
        let s = resolve(&files, "net/netfilter/nf_conntrack_tcp_timeout_close").unwrap();
        assert_eq!((s.value.as_str(), s.glob, s.line), ("5", true, 1));
        let files = vec![
            file("b", "net.netfilter.*timeout* = 5\n"),
            file("c", "-net.netfilter.nf_conntrack_udp_timeout\n"),
        ];
        assert_eq!(
            resolve(&files, "net/netfilter/nf_conntrack_udp_timeout"),
            None
        );
        assert!(resolve(&files, "net/netfilter/nf_conntrack_icmp_timeout").is_some());
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("a?c", "abcd"));
        assert!(!glob_match("net/[n]*", "net/netfilter"));
        // Last explicit assignment wins.
        let files = vec![
            file("a", "net.core.somaxconn = 1\nnet.core.somaxconn = 2\n"),
            file("b", "net.core.somaxconn = 3\n"),
        ];
        let s = resolve(&files, "net/core/somaxconn").unwrap();
        assert_eq!((s.value.as_str(), s.file.as_str(), s.line), ("3", "b", 1));
    }

    #[test]
    fn modprobe_and_cmdline() {
        let t = "# x\noptions nf-conntrack hashsize=65536\noptions nf_conntrack acct=1 \\\n  hashsize=131072\noptions other hashsize=1\n";
        let s = parse_modprobe_hashsize(t, "etc/modprobe.d/ct.conf").unwrap();
        assert_eq!((s.value.as_str(), s.line), ("131072", 3));
        assert_eq!(
            parse_modprobe_hashsize("options other hashsize=1\n", "x"),
            None
        );
        let c = parse_cmdline_hashsize(
            "ro quiet nf_conntrack.hashsize=262144 -- nf_conntrack.hashsize=1",
        )
        .unwrap();
        assert_eq!(c.value, "262144");
        assert_eq!(parse_cmdline_hashsize("ro quiet"), None);
        let m = parse_modules_load(
            "# c\nnf_conntrack\nloop\nnf-nat\n",
            "etc/modules-load.d/x.conf",
        );
        assert_eq!(
            m.iter()
                .map(|s| (s.value.as_str(), s.line))
                .collect::<Vec<_>>(),
            vec![("nf_conntrack", 2), ("nf_nat", 4)]
        );
        assert_eq!(
            parse_cmdline_modules_load("modules-load=loop,nf_conntrack").len(),
            1
        );
        assert!(builtin_lists_conntrack(
            "kernel/net/netfilter/nf_conntrack.ko\n"
        ));
        assert!(!builtin_lists_conntrack(
            "kernel/net/netfilter/nf_conntrack_ftp.ko\n"
        ));
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400), k in "\\PC{0,40}") {
            let s = String::from_utf8_lossy(&b);
            let a = parse_sysctl_conf(&s);
            let f = vec![ConfFile { path: "x".into(), assigns: a }];
            let _ = resolve(&f, &normalize_key(&k));
            let _ = glob_match(&k, &s);
            let _ = parse_modprobe_hashsize(&s, "x");
            let _ = parse_cmdline_hashsize(&s);
            let _ = parse_modules_load(&s, "x");
            let _ = parse_cmdline_modules_load(&s);
            let _ = builtin_lists_conntrack(&s);
        }
    }
}

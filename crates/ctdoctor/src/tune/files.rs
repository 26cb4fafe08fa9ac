//! The text edits `tune` makes to boot files, and what boot would set after
//! them: pure functions of file texts.
//!
//! The edits are those `change::render` prints as shell: in a sysctl.d file
//! every line assigning the key is removed and `key = value` appended
//! ([`set_sysctl`]; idempotent: a second run gives the same text); a line of
//! a file applied later is edited in place ([`set_line_value`], the
//! renderer's `sed 'Ns/=.*/= V/'`); `options nf_conntrack hashsize=N`
//! replaces the module's earlier hashsize lines ([`set_module_option`]); a
//! modules-load.d line is added once ([`add_line`]).
//!
//! [`Boot`] replays the precedence rules of `host::persist` (masking by
//! basename, application order, explicit over glob, /etc/sysctl.conf last
//! for procps only) on the edited texts, so "would this survive a reboot"
//! is answered by the same code `check` uses, not by a second copy.
//!
//! Not for: reading or writing the files (tune::apply), deciding the values
//! (checks, plan, tune::profile).

use crate::host::persist::{
    normalize_key, parse_modprobe_hashsize, parse_sysctl_conf, resolve, BootTexts, ConfFile,
    Setting, SYSCTL_CONF,
};

/// The first line of a sysctl.d file `tune` creates.
pub const HEADER: &str =
    "# Written by ctdoctor tune (journaled: `ctdoctor tune --history`, undo: `ctdoctor tune --rollback`).\n";

/// Whether a sysctl.d line assigns `key_path` (path form), in any key form,
/// with or without a leading `-`.
fn assigns(line: &str, key_path: &str) -> bool {
    let l = line.trim();
    if l.starts_with('#') || l.starts_with(';') {
        return false;
    }
    let l = l.strip_prefix('-').unwrap_or(l);
    l.split_once('=')
        .is_some_and(|(k, _)| !k.trim().is_empty() && normalize_key(k) == key_path)
}

/// Lines of a text with their line ends, the last one given one.
fn lines_terminated(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_inclusive('\n').map(|l| {
        if l.ends_with('\n') {
            l.to_string()
        } else {
            format!("{l}\n")
        }
    })
}

/// `key = value` set in a sysctl.d text (`None`: the file does not exist
/// yet; it starts with [`HEADER`]): every line assigning `key` removed,
/// the assignment appended.
pub fn set_sysctl(text: Option<&str>, key: &str, value: &str) -> String {
    let path = normalize_key(key);
    let mut out: String = match text {
        Some(t) => lines_terminated(t).filter(|l| !assigns(l, &path)).collect(),
        None => HEADER.to_string(),
    };
    out.push_str(&format!("{key} = {value}\n"));
    out
}

/// Line `line` (1-based) of `text` with everything from its first `=`
/// replaced by `= value`; None when there is no such line or it has no `=`.
pub fn set_line_value(text: &str, line: u32, value: &str) -> Option<String> {
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let mut out = String::with_capacity(text.len() + value.len());
    let mut found = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i == idx {
            let (body, end) = match l.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (l, ""),
            };
            let eq = body.find('=')?;
            out.push_str(&body[..eq]);
            out.push_str("= ");
            out.push_str(value);
            out.push_str(end);
            found = true;
        } else {
            out.push_str(l);
        }
    }
    found.then_some(out)
}

/// Whether a modprobe.d line is `options MODULE ... OPT=...` (module names
/// compare with `-` = `_`).
fn sets_option(line: &str, module: &str, opt: &str) -> bool {
    let mut w = line.split_whitespace();
    w.next() == Some("options")
        && w.next().map(|m| m.replace('-', "_")).as_deref() == Some(module)
        && w.any(|o| o.starts_with(&format!("{opt}=")))
}

/// `options MODULE OPT=VALUE` set in a modprobe.d text: the module's lines
/// setting `opt` removed, the line appended.
pub fn set_module_option(text: Option<&str>, module: &str, opt: &str, value: &str) -> String {
    let mut out: String = match text {
        Some(t) => lines_terminated(t)
            .filter(|l| !sets_option(l, module, opt))
            .collect(),
        None => String::new(),
    };
    out.push_str(&format!("options {module} {opt}={value}\n"));
    out
}

/// In a modprobe.d text, the value of `opt=` on line `line` replaced.
pub fn set_option_on_line(text: &str, line: u32, opt: &str, value: &str) -> Option<String> {
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i != idx {
            out.push_str(l);
            continue;
        }
        let prefix = format!("{opt}=");
        let start = l.find(&prefix)? + prefix.len();
        let end = l[start..]
            .find(|c: char| c.is_whitespace())
            .map_or(l.len(), |e| start + e);
        out.push_str(&l[..start]);
        out.push_str(value);
        out.push_str(&l[end..]);
        found = true;
    }
    found.then_some(out)
}

/// `line` added to a text unless a line equal to it exists (the renderer's
/// `grep -qxF LINE || echo LINE >>`).
pub fn add_line(text: Option<&str>, line: &str) -> String {
    let t = text.unwrap_or_default();
    if t.lines().any(|l| l == line) {
        return t.to_string();
    }
    let mut out: String = lines_terminated(t).collect();
    out.push_str(line);
    out.push('\n');
    out
}

/// The base name of a relative path.
fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The boot files as they would be after tune's edits: sysctl and
/// modprobe texts in application order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Boot {
    pub sysctl_d: Vec<(String, String)>,
    pub sysctl_conf: Option<String>,
    pub modprobe_d: Vec<(String, String)>,
}

impl Boot {
    pub fn new(t: &BootTexts) -> Boot {
        Boot {
            sysctl_d: t.sysctl_d.clone(),
            sysctl_conf: t.sysctl_conf.clone(),
            modprobe_d: t.modprobe_d.clone(),
        }
    }

    /// The current text of a file boot reads (relative path), if any.
    pub fn text(&self, path: &str) -> Option<&str> {
        if path == SYSCTL_CONF {
            return self.sysctl_conf.as_deref();
        }
        self.sysctl_d
            .iter()
            .chain(&self.modprobe_d)
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.as_str())
    }

    /// Put `text` at `path`: /etc/sysctl.conf, a `sysctl.d/` file or a
    /// `modprobe.d/` file. A new file masks any file of the same base name
    /// in a later directory and takes its place in basename order (files
    /// under /etc come first in the masking order, and tune writes only there
    /// or files already in the list).
    pub fn write(&mut self, path: &str, text: String) {
        if path == SYSCTL_CONF {
            self.sysctl_conf = Some(text);
            return;
        }
        let list = if path.contains("modprobe.d/") {
            &mut self.modprobe_d
        } else {
            &mut self.sysctl_d
        };
        if let Some(e) = list.iter_mut().find(|(p, _)| p == path) {
            e.1 = text;
            return;
        }
        list.retain(|(p, _)| base(p) != base(path));
        list.push((path.to_string(), text));
        list.sort_by(|a, b| base(&a.0).cmp(base(&b.0)));
    }

    fn conf_files(&self, with_sysctl_conf: bool) -> Vec<ConfFile> {
        let mut v: Vec<ConfFile> = self
            .sysctl_d
            .iter()
            .map(|(p, t)| ConfFile {
                path: p.clone(),
                assigns: parse_sysctl_conf(t),
            })
            .collect();
        if with_sysctl_conf {
            if let Some(t) = &self.sysctl_conf {
                v.push(ConfFile {
                    path: SYSCTL_CONF.into(),
                    assigns: parse_sysctl_conf(t),
                });
            }
        }
        v
    }

    /// What boot sets for `key` (any form): with procps `sysctl --system`
    /// (/etc/sysctl.conf last) and with systemd-sysctl (no sysctl.conf).
    pub fn sysctl(&self, key: &str) -> (Option<Setting>, Option<Setting>) {
        let path = normalize_key(key);
        (
            resolve(&self.conf_files(true), &path),
            resolve(&self.conf_files(false), &path),
        )
    }

    /// The `options nf_conntrack hashsize=N` that wins (the last one).
    pub fn hashsize(&self) -> Option<Setting> {
        self.modprobe_d
            .iter()
            .filter_map(|(p, t)| parse_modprobe_hashsize(t, p))
            .next_back()
    }
}

/// One line of a file diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    /// Kept, for context.
    Same(String),
    Removed(String),
    Added(String),
}

/// The lines that change from `old` to `new`: the common head and tail are
/// dropped (at most one line of each kept for context), the middle shown
/// as removed then added. Exact for tune's edits, which delete some lines
/// and append one, or change one line in place.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = Vec::new();
    if head > 0 {
        out.push(DiffLine::Same(a[head - 1].to_string()));
    }
    for l in &a[head..a.len() - tail] {
        out.push(DiffLine::Removed(l.to_string()));
    }
    for l in &b[head..b.len() - tail] {
        out.push(DiffLine::Added(l.to_string()));
    }
    if tail > 0 {
        out.push(DiffLine::Same(a[a.len() - tail].to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_edits_replace_every_form_of_the_key_and_are_idempotent() {
        let t = "# keep\nnet.netfilter.nf_conntrack_max = 1\n -net/netfilter/nf_conntrack_max=2\n\
                 net.core.somaxconn = 5\nnet.netfilter.nf_conntrack_max_other = 3";
        let once = set_sysctl(Some(t), "net.netfilter.nf_conntrack_max", "524288");
        assert_eq!(
            once,
            "# keep\nnet.core.somaxconn = 5\nnet.netfilter.nf_conntrack_max_other = 3\n\
             net.netfilter.nf_conntrack_max = 524288\n"
        );
        assert_eq!(
            set_sysctl(Some(&once), "net.netfilter.nf_conntrack_max", "524288"),
            once
        );
        let new = set_sysctl(None, "net.ipv4.ip_local_port_range", "1024 65535");
        assert_eq!(
            new,
            format!("{HEADER}net.ipv4.ip_local_port_range = 1024 65535\n")
        );
        // The result parses back to the value (the reader's own parser).
        let a = parse_sysctl_conf(&new);
        assert_eq!(a[0].value.as_deref(), Some("1024 65535"));
    }

    #[test]
    fn line_edits_change_only_that_line() {
        let t = "a = 1\nnet.netfilter.nf_conntrack_max=9 # x\nb = 2";
        assert_eq!(
            set_line_value(t, 2, "7").unwrap(),
            "a = 1\nnet.netfilter.nf_conntrack_max= 7\nb = 2"
        );
        assert_eq!(set_line_value(t, 4, "7"), None);
        assert_eq!(set_line_value(t, 0, "7"), None);
        assert_eq!(set_line_value("# no assignment\n", 1, "7"), None);
    }

    #[test]
    fn module_options() {
        let t = "options nf_conntrack hashsize=1\noptions nf-conntrack acct=1\noptions other hashsize=3\n";
        assert_eq!(
            set_module_option(Some(t), "nf_conntrack", "hashsize", "262144"),
            "options nf-conntrack acct=1\noptions other hashsize=3\noptions nf_conntrack hashsize=262144\n"
        );
        assert_eq!(
            set_option_on_line(
                "options nf_conntrack acct=1 hashsize=5 x=1\n",
                1,
                "hashsize",
                "8"
            )
            .unwrap(),
            "options nf_conntrack acct=1 hashsize=8 x=1\n"
        );
        assert_eq!(
            add_line(Some("loop\n"), "nf_conntrack"),
            "loop\nnf_conntrack\n"
        );
        assert_eq!(
            add_line(Some("nf_conntrack"), "nf_conntrack"),
            "nf_conntrack"
        );
        assert_eq!(add_line(None, "nf_conntrack"), "nf_conntrack\n");
    }

    fn texts() -> BootTexts {
        BootTexts {
            sysctl_d: vec![
                (
                    "usr/lib/sysctl.d/50-vendor.conf".into(),
                    "net.netfilter.nf_conntrack_tcp_timeout_* = 5\n".into(),
                ),
                (
                    "etc/sysctl.d/99-later.conf".into(),
                    "net.netfilter.nf_conntrack_max = 65536\n".into(),
                ),
                (
                    "usr/lib/sysctl.d/90-ctdoctor.conf".into(),
                    "net.core.somaxconn = 1\n".into(),
                ),
            ],
            sysctl_conf: Some("net.core.somaxconn = 2\n".into()),
            ..BootTexts::default()
        }
    }

    #[test]
    fn boot_replays_precedence_on_the_edited_texts() {
        let mut b = Boot::new(&texts());
        let ours = "etc/sysctl.d/90-ctdoctor.conf";
        b.write(
            ours,
            "net.netfilter.nf_conntrack_max = 1\nnet.netfilter.nf_conntrack_tcp_timeout_time_wait = 30\n"
                .into(),
        );
        // Ours masks the vendor file of the same name and sorts before 99-later.
        assert_eq!(
            b.sysctl_d
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
            [
                "usr/lib/sysctl.d/50-vendor.conf",
                ours,
                "etc/sysctl.d/99-later.conf"
            ]
        );
        let (procps, systemd) = b.sysctl("net.netfilter.nf_conntrack_max");
        assert_eq!(procps.unwrap().file, "etc/sysctl.d/99-later.conf");
        assert_eq!(systemd.unwrap().value, "65536");
        // An explicit assignment beats a glob in an earlier or later file.
        let (p, _) = b.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait");
        let p = p.unwrap();
        assert_eq!((p.file.as_str(), p.value.as_str()), (ours, "30"));
        // sysctl.conf counts for procps only.
        let (p, s) = b.sysctl("net.core.somaxconn");
        assert_eq!(p.unwrap().value, "2");
        assert_eq!(s, None, "the masked vendor file no longer counts");
        b.write("etc/sysctl.d/99-later.conf", "".into());
        assert_eq!(
            b.sysctl("net.netfilter.nf_conntrack_max").0.unwrap().file,
            ours
        );
    }

    #[test]
    fn diffs_show_the_changed_middle() {
        use DiffLine::*;
        assert_eq!(
            diff("a\nb\nc\n", "a\nc\nb2\n"),
            vec![
                Same("a".into()),
                Removed("b".into()),
                Removed("c".into()),
                Added("c".into()),
                Added("b2".into())
            ]
        );
        assert_eq!(diff("", "x\n"), vec![Added("x".into())]);
        assert_eq!(
            diff("a\nb\nc", "a\nB\nc"),
            vec![
                Same("a".into()),
                Removed("b".into()),
                Added("B".into()),
                Same("c".into())
            ]
        );
        assert!(diff("same\n", "same\n")
            .iter()
            .all(|l| matches!(l, Same(_))));
    }
}

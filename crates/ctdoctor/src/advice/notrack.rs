//! The `ctdoctor notrack` lines other commands print (check's notes, the
//! runbook): the command line for a namespace, and this host's server
//! ports worth leaving untracked. Pure.
//!
//! Not for: building the rules (notrack).

/// The nft table of our own (family inet).
pub const TABLE: &str = "ctdoctor_notrack";
/// The comment on every rule we add outside our own table and chains.
pub const MARK: &str = "ctdoctor-notrack";

/// The `ctdoctor notrack` command line for `flags` (e.g. `--lo`) in the
/// namespace a report names (`suggest::netns_label`): `--netns NAME`, `PID`
/// or `PATH`; None for a namespace known only by its inode (no flag names it).
pub fn command_line(flags: &str, netns_label: Option<&str>) -> Option<String> {
    super::change::ctdoctor_line("notrack", flags, netns_label)
}

/// The `ctdoctor notrack FLAGS` line for the namespace `f` describes, as a
/// fix note; a namespace known only by its inode gets the line with a
/// placeholder in words (no flag names it).
pub fn note_line(flags: &str, f: &crate::snapshot::Facts) -> String {
    let label = super::suggest::netns_label(f);
    match command_line(flags, label.as_deref()) {
        Some(l) => l,
        None => format!(
            "(in netns {}: find its name or a pid, then: ctdoctor notrack --netns NAME {flags})",
            label.unwrap_or_default()
        ),
    }
}

/// This host's server ports worth leaving untracked, from the listening
/// sockets (not those bound to loopback only): up to 5, sorted.
pub fn server_ports(f: &crate::snapshot::Facts) -> Vec<u16> {
    let Ok(s) = &f.sockets else { return Vec::new() };
    let Ok(d) = &s.diag else { return Vec::new() };
    let mut p: Vec<u16> = d
        .listeners
        .iter()
        .filter(|l| !(l.addr.starts_with("127.") || l.addr == "::1"))
        .map(|l| l.port)
        .collect();
    p.sort();
    p.dedup();
    p.truncate(5);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_name_the_namespace() {
        assert_eq!(command_line("--lo", None).unwrap(), "ctdoctor notrack --lo");
        assert_eq!(
            command_line("--lo", Some("gw")).unwrap(),
            "ctdoctor notrack --netns gw --lo"
        );
        assert_eq!(
            command_line("--lo", Some("pid 42")).unwrap(),
            "ctdoctor notrack --netns 42 --lo"
        );
        assert_eq!(command_line("--lo", Some("inode 4026532177")), None);
    }
}

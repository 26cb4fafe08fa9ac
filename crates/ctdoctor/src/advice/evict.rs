//! Eviction's policy: which TCP states `tune --evict` deletes freely (the
//! closing ones) and why the others need `--force`. Pure; plan's relief
//! lines and tune share it.
//!
//! Not for: deleting (tune::evict).

use crate::table::entry::TcpState;

/// States an entry is deleted in without `force`: the flow is closing or
/// was never answered.
pub const CLOSING: &[TcpState] = &[
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::FinWait,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::SynSent,
    TcpState::SynSent2,
];

/// Why deleting entries in `states` needs `--force`: some are not closing.
pub fn needs_force(states: u16) -> Option<String> {
    let live: Vec<&str> = TcpState::ALL
        .iter()
        .filter(|st| states & (1 << **st as u16) != 0 && !CLOSING.contains(st))
        .map(|st| st.as_str())
        .collect();
    if live.is_empty() {
        return None;
    }
    Some(format!(
        "{} entries belong to live or opening connections: deleting them breaks NATed and \
         stateful flows (their next packet needs a new entry, which a `ct state` policy may \
         drop). Evict closing states ({}), or add --force",
        live.join(", "),
        CLOSING
            .iter()
            .map(|s| s.as_str().to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

//! ctnetlink: the conntrack netlink protocol (NETLINK_NETFILTER, subsystem
//! CTNETLINK), spoken directly: streaming table dumps decoded zero-copy,
//! statistics, create/update/delete and events.
//!
//! Protocol only: no knowledge of ctdoctor's checks or command line.

//! The shipped guards in the real kernel: a `netns::owned::Netns` is gone
//! after drop, after a panic and after `remove`; a `netns::guard::Knob`
//! puts its value back after a panic, in the namespace it was set in, even
//! when dropped on another thread. Per-netns knobs only: no global value
//! ever changes here.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use netns::guard::Knob;
use netns::owned::Netns;
use netns::{run_in, SetupError};

const TIME_WAIT: &str = "net/netfilter/nf_conntrack_tcp_timeout_time_wait";

fn listed(name: &str) -> bool {
    testns::run_text("ip", &["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn gone(name: &str) -> bool {
    !Path::new("/run/netns").join(name).exists() && !listed(name)
}

fn host_value(rel: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(rel))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn owned_netns_is_removed_on_drop_on_panic_and_on_remove() {
    if !testns::kernel_test("owned_netns_is_removed_on_drop_on_panic_and_on_remove") {
        return;
    }
    let _lock = testns::lock_shared();

    let ns = Netns::create("ctdt-guard").expect("create");
    let name = ns.name().to_string();
    assert!(listed(&name), "{name} listed while it lives");
    assert_eq!(ns.count().expect("count"), 0, "a fresh table");
    assert!(
        ns.exec_text("nft", &["list", "ruleset"])
            .expect("nft list")
            .contains("ct state established,related accept"),
        "tracking rules loaded"
    );
    // The name is taken while it lives.
    assert!(matches!(
        Netns::add(&name),
        Err(SetupError::NameTaken { .. })
    ));
    drop(ns);
    assert!(gone(&name), "{name} left behind after drop");

    // A panicking test body: the guard drops while the panic unwinds.
    let mut seen = String::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let ns = Netns::create("ctdt-guard").expect("create");
        seen = ns.name().to_string();
        panic!("test body fails with {} alive", ns.name());
    }));
    assert!(r.is_err(), "the body panicked");
    assert!(!seen.is_empty());
    assert!(gone(&seen), "{seen} left behind after a panic");

    let ns = Netns::create("ctdt-guard").expect("create");
    let name = ns.name().to_string();
    ns.remove().expect("remove");
    assert!(gone(&name), "{name} left behind after remove");
}

#[test]
fn knob_restores_after_a_panic_in_its_own_namespace() {
    if !testns::kernel_test("knob_restores_after_a_panic_in_its_own_namespace") {
        return;
    }
    let _lock = testns::lock_shared();
    let ns = Netns::create("ctdt-knob").expect("create");
    let before = ns.proc_sys(TIME_WAIT).expect("read");
    let host_before = host_value(TIME_WAIT);
    let target = ns.target();

    // Set inside the namespace, panic while it is held.
    let r = run_in(&target, || {
        catch_unwind(|| {
            let k = Knob::set(TIME_WAIT, "7").expect("set");
            assert_eq!(k.old(), before);
            assert_eq!(host_value(TIME_WAIT), "7", "this thread sees the netns");
            panic!("test body fails with the knob at 7");
        })
    })
    .expect("enter");
    assert!(r.is_err(), "the body panicked");
    assert_eq!(
        ns.proc_sys(TIME_WAIT).unwrap(),
        before,
        "restored after panic"
    );
    assert_eq!(host_value(TIME_WAIT), host_before, "the host never changed");

    // Set inside, dropped out here on the host's thread: the held file
    // still names the namespace's knob, not the host's.
    let k = run_in(&target, || Knob::set(TIME_WAIT, "9"))
        .expect("enter")
        .expect("set");
    assert_eq!(ns.proc_sys(TIME_WAIT).unwrap(), "9");
    assert_eq!(host_value(TIME_WAIT), host_before);
    drop(k);
    assert_eq!(ns.proc_sys(TIME_WAIT).unwrap(), before, "restored on drop");
    assert_eq!(host_value(TIME_WAIT), host_before, "the host never changed");

    // An explicit restore reports success.
    let k = run_in(&target, || Knob::set(TIME_WAIT, "11"))
        .expect("enter")
        .expect("set");
    k.restore().expect("restore");
    assert_eq!(ns.proc_sys(TIME_WAIT).unwrap(), before);

    // A value the kernel refuses is an error naming the file, and the
    // old value stays.
    let e = run_in(&target, || Knob::set(TIME_WAIT, "not-a-number"))
        .expect("enter")
        .expect_err("EINVAL");
    assert!(e.to_string().contains(TIME_WAIT), "{e}");
    assert_eq!(ns.proc_sys(TIME_WAIT).unwrap(), before);

    // Someone else changed it after us: theirs now, not put back.
    let k = run_in(&target, || Knob::set(TIME_WAIT, "13"))
        .expect("enter")
        .expect("set");
    ns.sysctl(TIME_WAIT, "17").expect("someone else");
    let e = k.restore().expect_err("changed meanwhile");
    assert!(e.to_string().contains("changed by someone else"), "{e}");
    assert_eq!(ns.proc_sys(TIME_WAIT).unwrap(), "17", "left as they set it");
}

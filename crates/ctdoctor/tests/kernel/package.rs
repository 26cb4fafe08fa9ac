//! Issue 25, end to end: `scripts/package.sh` builds target/dist (the
//! static binary, the .deb, the tarball), and each is used as a gateway
//! would use it:
//!
//! - the binary is static (`file`, `ldd`) and its `--version` names the
//!   commit `git rev-parse` names;
//! - `lintian` finds no error in the .deb (what it says is printed);
//! - the binary runs in a Debian 11 (bullseye, glibc 2.31) minbase chroot:
//!   `--version` and `check --json`;
//! - the .deb in a clean Debian 12 (bookworm) minbase with systemd, booted
//!   with `systemd-nspawn --boot --private-network` (systemd as PID 1 in a
//!   network namespace of its own): `dpkg -i`; the files, their modes, the
//!   unit not enabled; `ctdoctor check --json`; `systemctl enable --now
//!   ctdoctor-exporter`; /healthz and /metrics scraped in the container's
//!   namespace (the count and limit against the kernel's files there); a
//!   `tune --apply` and `--rollback` leave a journal; `dpkg -r` stops the
//!   exporter and leaves only the journal and dpkg's own record of the
//!   package (every path new since before `dpkg -i` is listed); `dpkg -P`
//!   removes those too and says so;
//! - the tarball holds the binary, man page, completions and unit.
//!
//! The chroots come from `debootstrap --variant=minbase` once, cached in
//! target/tools/chroot/{bookworm,bullseye} (~45 s each on first use); each
//! run uses an overlay over the cache (upper layer in a temp dir), so the
//! cache stays clean. Every mount is made inside a mount namespace of its
//! own (`unshare --mount`) and goes with its last process: no mount
//! outlives the test, a panic included; so does nspawn's runtime directory
//! /run/systemd/nspawn when the test made it. Traffic: only inside the
//! container's own network namespace.
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::exporter::{read_response, Samples};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// target/tools/chroot/DIST, made by debootstrap when it is not there yet
/// (into DIST.tmp, renamed when complete).
fn chroot_base(dist: &str, include: &[&str]) -> PathBuf {
    let dir = repo().join("target/tools/chroot").join(dist);
    if dir.join("usr/bin/dpkg").is_file() {
        return dir;
    }
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let mirror = std::env::var("CTDOCTOR_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let t0 = Instant::now();
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    let out = cmd.arg(dist).arg(&tmp).arg(&mirror).output().unwrap();
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        panic!("debootstrap {dist} from {mirror}: {}", text(&out));
    }
    std::fs::rename(&tmp, &dir).unwrap();
    eprintln!(
        "package: debootstrap {dist} into {}: {:.0} s",
        dir.display(),
        t0.elapsed().as_secs_f64()
    );
    dir
}

/// An overlay's upper and work directories (and its mount point), in a
/// temp dir under target/tmp, removed on drop.
struct Layer {
    dir: tempfile::TempDir,
}

impl Layer {
    fn new() -> Layer {
        let dir = tempfile::Builder::new()
            .prefix("package-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        for d in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Layer { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// `sh -ec SCRIPT` in a new mount namespace where the overlay of
    /// `lower` is mounted on $1 (the layer's root); ARGS follow as $2...
    fn command(&self, lower: &Path, script: &str, args: &[&str]) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-ec"])
            .arg(format!(
                "mount -t overlay overlay -o \"lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK\" \"$1\"\n{script}"
            ))
            .arg("sh")
            .arg(self.path("root"))
            .args(args)
            .env("LOWER", lower)
            .env("UPPER", self.path("upper"))
            .env("WORK", self.path("work"));
        c
    }
}

/// A booted container: systemd-nspawn and the container's PID 1 are
/// killed on drop when still there.
struct Container {
    nspawn: Child,
    leader: u32,
}

impl Container {
    fn boot(layer: &Layer, lower: &Path) -> Container {
        let log = std::fs::File::create(layer.path("nspawn.log")).unwrap();
        let nspawn = layer
            .command(
                lower,
                "exec systemd-nspawn --quiet --register=no --keep-unit --private-network \
                 --console=pipe -D \"$1\" --boot",
                &[],
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // unshare and sh exec: the child is nspawn; its child becomes
        // PID 1, systemd, once nspawn has set the container up.
        let pid = nspawn.id();
        let log = || std::fs::read_to_string(layer.path("nspawn.log")).unwrap_or_default();
        let t0 = Instant::now();
        let leader = loop {
            let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let status = std::fs::read_to_string(e.path().join("status")).ok()?;
                let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?;
                let comm = status.lines().find_map(|l| l.strip_prefix("Name:"))?;
                (ppid.trim() == pid.to_string() && comm.trim() == "systemd")
                    .then(|| e.file_name().to_str()?.parse::<u32>().ok())?
            });
            if let Some(l) = found {
                break l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no systemd as the container's PID 1 in 20 s: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let c = Container { nspawn, leader };
        // Wait for systemd to finish booting (a failed unit is "degraded");
        // "offline" until it answers on its socket.
        let state = loop {
            let out = c.run(&["systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state != "offline" && !state.is_empty() || t0.elapsed() > Duration::from_secs(60) {
                break state;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            state == "running" || state == "degraded",
            "container booted to {state:?}: {}",
            log()
        );
        if state == "degraded" {
            eprintln!(
                "package: container degraded: {}",
                c.sh("systemctl --failed --no-legend --no-pager || true")
            );
        }
        c
    }

    /// A command inside the container (all its namespaces).
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["--target", &self.leader.to_string(), "--all", "--"])
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `sh -c SCRIPT` inside; its stdout, or a panic with its output.
    fn sh(&self, script: &str) -> String {
        ok(self.run(&["sh", "-c", script]), script)
    }

    /// Every path on the container's root file system (not /proc, /sys,
    /// /dev, /run, /tmp: other mounts).
    fn paths(&self) -> std::collections::BTreeSet<String> {
        self.sh("find / -xdev").lines().map(String::from).collect()
    }

    /// HTTP/1.0 GET inside the container's network namespace.
    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        netns::run_in(&netns::Target::Pid(self.leader), || {
            let mut s = TcpStream::connect_timeout(
                &"127.0.0.1:9651".parse().unwrap(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(format!("GET {path} HTTP/1.0\r\nHost: c\r\n\r\n").as_bytes())?;
            let (status, _, body) = read_response(&mut s);
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
        .expect("entering the container's netns")
    }

    fn poweroff(mut self) {
        let _ = self.run(&["systemctl", "poweroff"]);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if self.nspawn.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the container did not power off in 30 s");
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.nspawn.try_wait().ok().flatten().is_none() {
            // PID 1 of a PID namespace: its death ends every process in it.
            unsafe { libc::kill(self.leader as i32, libc::SIGKILL) };
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
    }
}

/// systemd-nspawn's runtime directory on the host, /run/systemd/nspawn
/// (its lock files and propagation dirs): removed on drop when it was not
/// there before and no other systemd-nspawn runs (a container killed after
/// a failure leaves its lock file behind).
struct NspawnRuntime {
    made: bool,
}

const NSPAWN_RUN: &str = "/run/systemd/nspawn";

impl NspawnRuntime {
    fn note() -> NspawnRuntime {
        NspawnRuntime {
            made: !Path::new(NSPAWN_RUN).exists(),
        }
    }
}

impl Drop for NspawnRuntime {
    fn drop(&mut self) {
        let running = std::fs::read_dir("/proc").is_ok_and(|d| {
            d.flatten().any(|e| {
                std::fs::read_to_string(e.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "systemd-nspawn")
            })
        });
        if self.made && !running {
            let _ = std::fs::remove_dir_all(NSPAWN_RUN);
        }
    }
}

fn json(s: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{what}: no JSON ({e}): {s}"))
}

#[test]
fn package_builds_installs_runs_and_removes_cleanly() {
    if !testns::kernel_test("package::package_builds_installs_runs_and_removes_cleanly") {
        return;
    }
    for tool in [
        "debootstrap",
        "systemd-nspawn",
        "lintian",
        "dpkg-deb",
        "file",
        "strip",
        "nsenter",
        "unshare",
        "git",
        "rpmbuild",
    ] {
        if !testns::need_tool(tool) {
            return;
        }
    }
    let repo = repo();

    // 1. Build. One job unless told: the other kernel tests run meanwhile.
    let t0 = Instant::now();
    let jobs = std::env::var("CARGO_BUILD_JOBS").unwrap_or_else(|_| "1".into());
    let out = Command::new("bash")
        .arg(repo.join("scripts/package.sh"))
        .env("CARGO_BUILD_JOBS", jobs)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let log = ok(out, "scripts/package.sh");
    eprintln!(
        "package: scripts/package.sh: {:.0} s\n{log}",
        t0.elapsed().as_secs_f64()
    );
    let dist = repo.join("target/dist");
    let version = std::fs::read_to_string(repo.join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("version = \"")?
                .strip_suffix('"')
                .map(String::from)
        })
        .unwrap();
    let bin = dist.join("ctdoctor");
    let deb = dist.join(format!("ctdoctor_{version}-1_amd64.deb"));
    let tarball = dist.join(format!("ctdoctor-{version}-x86_64-linux.tar.gz"));
    let rpm = dist.join(format!("ctdoctor-{version}-1.x86_64.rpm"));
    for f in [&bin, &deb, &tarball, &rpm] {
        let size = std::fs::metadata(f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .len();
        eprintln!("package: {}: {size} bytes", f.display());
    }
    ok(
        Command::new("sha256sum")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&dist)
            .output()
            .unwrap(),
        "sha256sum -c SHA256SUMS",
    );

    // 2. Static, and says its commit.
    let kind = testns::run_text("file", &["-b", bin.to_str().unwrap()]);
    assert!(
        kind.contains("static-pie linked") || kind.contains("statically linked"),
        "not static: {kind}"
    );
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    assert!(
        !text(&ldd).contains("=>"),
        "ldd lists libraries: {}",
        text(&ldd)
    );
    let commit = testns::run_text("git", &["-C", repo.to_str().unwrap(), "rev-parse", "HEAD"]);
    let want = format!("ctdoctor {version} ({})", &commit.trim()[..12]);
    let said = testns::run_text(bin.to_str().unwrap(), &["--version"]);
    assert_eq!(said.trim(), want);

    // 3. lintian: no errors. Its ELF index leaves Berkeley DB files
    // (mldbm-elf-*) in TMPDIR: a directory of ours, removed after.
    let lint_tmp = tempfile::tempdir().unwrap();
    let lint = Command::new("lintian")
        .env("TMPDIR", lint_tmp.path())
        .args(["--fail-on", "error", "--display-info"])
        .arg(&deb)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&lint.stdout).into_owned();
    eprintln!("package: lintian ({}):\n{said}", lint.status);
    assert!(lint.status.success(), "lintian: {}", text(&lint));
    assert!(!said.lines().any(|l| l.starts_with("E:")), "{said}");

    // The build took no lock (minutes of compiling must not hold back the
    // tests that take it exclusive); what runs on the kernel does: the
    // limit scraped is compared with nf_conntrack_max, a global knob.
    let _lock = testns::lock_shared();

    // 4. The static binary on bullseye's userland (glibc 2.31).
    let bullseye = chroot_base("bullseye", &[]);
    let layer = Layer::new();
    let out = layer
        .command(
            &bullseye,
            "mount -t proc proc \"$1/proc\"; mount -t sysfs sysfs \"$1/sys\"\n\
             cp \"$2\" \"$1/usr/local/bin/ctdoctor\"\n\
             chroot \"$1\" ldd --version | head -n 1\n\
             chroot \"$1\" /usr/local/bin/ctdoctor --version\n\
             chroot \"$1\" /usr/local/bin/ctdoctor check --json > \"$3\" || [ $? -le 2 ]",
            &[
                bin.to_str().unwrap(),
                layer.path("check.json").to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    let said = ok(out, "the static binary in bullseye");
    eprintln!("package: bullseye: {said}");
    assert!(said.contains("GLIBC 2.31"), "not bullseye's glibc: {said}");
    assert!(said.contains(&want), "{said}");
    let check = json(
        &std::fs::read_to_string(layer.path("check.json")).unwrap(),
        "check --json in bullseye",
    );
    assert!(check["checked"].as_u64().unwrap() > 0, "{check}");
    drop(layer);

    // 5. The .deb in a clean bookworm with systemd as PID 1.
    let bookworm = chroot_base("bookworm", &["systemd"]);
    let _nspawn_run = NspawnRuntime::note();
    let layer = Layer::new();
    std::fs::copy(&deb, layer.path("upper/ctdoctor.deb")).unwrap();
    let t0 = Instant::now();
    let c = Container::boot(&layer, &bookworm);
    eprintln!(
        "package: container booted in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let before = c.paths();
    let installed = ok(c.run(&["dpkg", "-i", "/ctdoctor.deb"]), "dpkg -i");
    eprintln!("package: dpkg -i: {installed}");
    let modes = c.sh(
        "stat -c '%a %U %n' /usr/bin/ctdoctor /var/lib/ctdoctor /usr/share/man/man1/ctdoctor.1.gz \
         /usr/share/bash-completion/completions/ctdoctor /usr/share/zsh/vendor-completions/_ctdoctor \
         /usr/share/fish/vendor_completions.d/ctdoctor.fish /lib/systemd/system/ctdoctor-exporter.service \
         /usr/share/ctdoctor/systemd/all-netns.conf /usr/share/doc/ctdoctor/copyright",
    );
    for want in [
        "755 root /usr/bin/ctdoctor",
        "700 root /var/lib/ctdoctor",
        "644 root /lib/systemd/system/ctdoctor-exporter.service",
    ] {
        assert!(modes.lines().any(|l| l == want), "{want} in {modes}");
    }
    // The man page is ctdoctor(1) of this build (man-db is not in minbase).
    assert!(c
        .sh("zcat /usr/share/man/man1/ctdoctor.1.gz | head -n 5")
        .contains(&format!(".TH ctdoctor 1  \"{want}\"")));
    let enabled = c.run(&["systemctl", "is-enabled", "ctdoctor-exporter"]);
    assert_eq!(
        String::from_utf8_lossy(&enabled.stdout).trim(),
        "disabled",
        "{}",
        text(&enabled)
    );
    let unit = c.sh("systemctl cat ctdoctor-exporter");
    assert!(
        unit.contains("ExecStart=/usr/bin/ctdoctor exporter --listen 0.0.0.0:9651\n"),
        "{unit}"
    );
    // `systemctl cat` shows each drop-in under a "# PATH" header.
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("# /") && l.contains(".service.d/")),
        "a drop-in is active: {unit}"
    );

    let out = c.run(&["ctdoctor", "check", "--json"]);
    assert!(out.status.code().is_some_and(|c| c <= 2), "{}", text(&out));
    let check = json(&String::from_utf8_lossy(&out.stdout), "check --json");
    assert!(check["checked"].as_u64().unwrap() > 0, "{check}");

    // Conntrack on in the container's namespace: its own scrapes leave
    // entries for the exporter to count.
    ok(
        Command::new("nsenter")
            .args(["--target", &c.leader.to_string(), "--net", "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin
                    .take()
                    .unwrap()
                    .write_all(b"table inet pkgtest {\n chain out {\n  type filter hook output priority 0;\n  ct state new accept\n }\n}\n")?;
                ch.wait_with_output()
            })
            .unwrap(),
        "nft in the container's netns",
    );
    ok(
        c.run(&["systemctl", "enable", "--now", "ctdoctor-exporter"]),
        "systemctl enable --now ctdoctor-exporter",
    );
    let t0 = Instant::now();
    loop {
        match c.get("/healthz") {
            Ok((200, _)) => break,
            other => assert!(
                t0.elapsed() < Duration::from_secs(30),
                "/healthz in 30 s: {other:?}; {}",
                c.sh("systemctl status ctdoctor-exporter --no-pager || true")
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let exe = c.sh("readlink /proc/$(systemctl show -p MainPID --value ctdoctor-exporter)/exe");
    assert_eq!(exe.trim(), "/usr/bin/ctdoctor");
    let (status, body) = c.get("/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let count = c.sh("cat /proc/sys/net/netfilter/nf_conntrack_count");
    let count: f64 = count.trim().parse().unwrap();
    let limit = c.sh("cat /proc/sys/net/netfilter/nf_conntrack_max");
    let ino = std::fs::metadata(format!("/proc/{}/ns/net", c.leader)).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&ino).to_string();
    let s = Samples::parse(&body);
    let l = [("netns", ino.as_str()), ("netns_name", "")];
    let entries = s.get("ctdoctor_conntrack_entries", &l).expect("entries");
    assert_eq!(
        s.get("ctdoctor_conntrack_entries_limit", &l),
        Some(limit.trim().parse().unwrap())
    );
    // The /healthz polls and this scrape are tracked: at least two
    // entries; the kernel's count read just after differs by this
    // scrape's own connection at most.
    assert!(entries >= 2.0, "entries {entries}");
    assert!(
        (entries - count).abs() <= 1.0,
        "scraped {entries}, kernel {count}"
    );
    for src in ["conntrack", "system", "sockets"] {
        let mut l = l.to_vec();
        l.push(("source", src));
        assert_eq!(s.get("ctdoctor_source_up", &l), Some(1.0), "source {src}");
    }

    // A journal: a per-netns setting applied and rolled back.
    // The key is per network namespace: the host's value must not move.
    let tw = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait";
    let host_tw = std::fs::read_to_string(tw).unwrap();
    c.sh("ctdoctor tune --set net.netfilter.nf_conntrack_tcp_timeout_time_wait=30 --apply");
    assert_eq!(c.sh(&format!("cat {tw}")).trim(), "30");
    assert_eq!(std::fs::read_to_string(tw).unwrap(), host_tw);
    c.sh("ctdoctor tune --rollback");

    // 6. Removal leaves only the journal and dpkg's record.
    let removed = ok(c.run(&["dpkg", "-r", "ctdoctor"]), "dpkg -r");
    eprintln!("package: dpkg -r: {removed}");
    let active = c.run(&["systemctl", "is-active", "ctdoctor-exporter"]);
    assert_ne!(String::from_utf8_lossy(&active.stdout).trim(), "active");
    assert!(c.get("/healthz").is_err(), "the exporter still answers");
    let left: Vec<String> = c.paths().difference(&before).cloned().collect();
    eprintln!("package: left after dpkg -r: {left:#?}");
    assert!(left
        .iter()
        .any(|p| p.starts_with("/var/lib/ctdoctor/journal/")));
    let unexpected: Vec<&String> = left
        .iter()
        .filter(|p| {
            !(*p == "/var/lib/ctdoctor"
                || p.starts_with("/var/lib/ctdoctor/")
                || *p == "/var/lib/dpkg/info/ctdoctor.list"
                || *p == "/var/lib/dpkg/info/ctdoctor.postrm")
        })
        .collect();
    assert!(unexpected.is_empty(), "left after dpkg -r: {unexpected:?}");
    let purged = ok(c.run(&["dpkg", "-P", "ctdoctor"]), "dpkg -P");
    eprintln!("package: dpkg -P: {purged}");
    assert!(purged.contains("removed /var/lib/ctdoctor"), "{purged}");
    let left: Vec<String> = c.paths().difference(&before).cloned().collect();
    assert!(left.is_empty(), "left after dpkg -P: {left:?}");
    c.poweroff();
    drop(layer);

    // 7. The tarball.
    let list = testns::run_text("tar", &["-tzf", tarball.to_str().unwrap()]);
    let top = format!("ctdoctor-{version}-x86_64-linux/");
    for f in [
        "bin/ctdoctor",
        "share/man/man1/ctdoctor.1",
        "share/bash-completion/completions/ctdoctor",
        "share/zsh/site-functions/_ctdoctor",
        "share/fish/vendor_completions.d/ctdoctor.fish",
        "lib/systemd/system/ctdoctor-exporter.service",
        "share/ctdoctor/systemd/all-netns.conf",
    ] {
        assert!(
            list.lines().any(|l| l == format!("{top}{f}")),
            "{f} in {list}"
        );
    }

    // 8. The rpm: its files and modes, its scripts, what it requires;
    // installed into an empty root (without its scripts: this is no RHEL)
    // and erased, it leaves no file outside rpm's database.
    let rpm_s = rpm.to_str().unwrap();
    let files = testns::run_text("rpm", &["-qlvp", rpm_s]);
    for (mode, path) in [
        ("-rwxr-xr-x", "/usr/bin/ctdoctor"),
        ("drwx------", "/var/lib/ctdoctor"),
        (
            "-rw-r--r--",
            "/usr/lib/systemd/system/ctdoctor-exporter.service",
        ),
        ("-rw-r--r--", "/usr/share/man/man1/ctdoctor.1.gz"),
        (
            "-rw-r--r--",
            "/usr/share/bash-completion/completions/ctdoctor",
        ),
        ("-rw-r--r--", "/usr/share/zsh/site-functions/_ctdoctor"),
        (
            "-rw-r--r--",
            "/usr/share/fish/vendor_completions.d/ctdoctor.fish",
        ),
        ("-rw-r--r--", "/usr/share/ctdoctor/systemd/all-netns.conf"),
    ] {
        let hit = files
            .lines()
            .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}")));
        assert!(hit, "{mode} {path} in {files}");
    }
    let requires = testns::run_text("rpm", &["-qp", "--requires", rpm_s]);
    let only_sh = requires
        .lines()
        .all(|l| l == "/bin/sh" || l.starts_with("rpmlib("));
    assert!(only_sh, "{requires}");
    let scripts = testns::run_text("rpm", &["-qp", "--scripts", rpm_s]);
    assert!(
        scripts.contains("disable --now ctdoctor-exporter.service"),
        "{scripts}"
    );
    let root = tempfile::Builder::new()
        .prefix("package-rpm-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let rpm_in = |args: &[&str]| {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(root.path())
            .args(["--dbpath", "/rpmdb"])
            .args(args)
            .output()
            .unwrap();
        ok(out, &format!("rpm {args:?}"))
    };
    let regular = || -> Vec<String> {
        let list = testns::run_text(
            "find",
            &[
                root.path().to_str().unwrap(),
                "-path",
                "*/rpmdb",
                "-prune",
                "-o",
                "-type",
                "f",
                "-print",
            ],
        );
        list.lines().map(String::from).collect()
    };
    rpm_in(&["-i", "--nodeps", "--noscripts", rpm_s]);
    let installed = regular();
    assert!(
        installed.iter().any(|f| f.ends_with("/usr/bin/ctdoctor")),
        "{installed:?}"
    );
    let ours = testns::run_text(
        root.path().join("usr/bin/ctdoctor").to_str().unwrap(),
        &["--version"],
    );
    assert_eq!(ours.trim(), want);
    rpm_in(&["-e", "--noscripts", "ctdoctor"]);
    let left = regular();
    assert!(left.is_empty(), "left after rpm -e: {left:?}");
    assert!(!root.path().join("var/lib/ctdoctor").exists());
}

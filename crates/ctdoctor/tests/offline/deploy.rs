//! Tests of deploy/ without a kernel or a server: `promtool check` and
//! `promtool test rules` on the rules, every alert tested firing and not
//! firing, annotations with the `ctdoctor check` runbook, every metric and
//! label name in the rules and the dashboard one the exporter exports
//! (`exporter::metrics::FAMILIES`), the dashboard's structure, the systemd
//! unit through `systemd-analyze verify` and `security`, and the Kubernetes
//! manifests parsed (serde_yaml), cross-checked and, when installed,
//! validated against the Kubernetes schemas (`kubernetes-validate --strict`).
//!
//! Tools missing outside CI are skipped with the reason printed; under
//! CI=true a missing tool fails (scripts/test.sh installs them). Not for:
//! a real Prometheus scraping a real exporter (deploy_kernel.rs).
#![allow(clippy::unwrap_used)] // tests, benches and examples unwrap freely

use crate::common::deploy::*;
use ctdoctor::exporter::metrics::FAMILIES;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Whether `tool` can run: under CI=true it must (panics otherwise).
fn need(tool: &str, why: &str) -> bool {
    testns::need(
        testns::have(tool),
        &format!("{why}: `{tool}` is not installed (scripts/test.sh installs it)"),
    )
}

/// Run `cmd args` in `dir`: (success, stdout + stderr).
fn run_in(dir: &Path, cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every rule of the rules file: (group, rule mapping).
fn rules() -> Vec<(String, Value)> {
    let v = yaml(RULES);
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().expect("groups") {
        let name = g["name"].as_str().expect("group name").to_string();
        for r in g["rules"].as_sequence().expect("rules") {
            out.push((name.clone(), r.clone()));
        }
    }
    out
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

#[test]
fn promtool_checks_and_tests_the_rules() {
    if !need("promtool", "promtool check/test rules") {
        return;
    }
    let (ok, said) = run_in(&repo(), "promtool", &["check", "rules", RULES]);
    assert!(ok, "promtool check rules:\n{said}");
    assert!(said.contains("SUCCESS: 18 rules found"), "{said}");
    let (ok, said) = run_in(&repo(), "promtool", &["test", "rules", RULE_TESTS]);
    assert!(
        ok && said.contains("SUCCESS"),
        "promtool test rules:\n{said}"
    );
    let (ok, said) = run_in(
        &repo().join("deploy/prometheus"),
        "promtool",
        &["check", "config", "prometheus.yml"],
    );
    assert!(ok, "promtool check config:\n{said}");
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    // (alert, severity) pairs of the rules file.
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, r) in rules() {
        if let Some(a) = s(&r, "alert") {
            let sev = r["labels"]["severity"].as_str().expect("severity label");
            want.insert((a.to_string(), sev.to_string()));
        }
    }
    assert_eq!(want.len(), 14, "{want:?}");
    let mut firing: BTreeSet<(String, String)> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let t = yaml(RULE_TESTS);
    for test in t["tests"].as_sequence().unwrap() {
        let Some(cases) = test["alert_rule_test"].as_sequence() else {
            continue;
        };
        for c in cases {
            let name = s(c, "alertname").unwrap().to_string();
            let exp = c["exp_alerts"].as_sequence().unwrap();
            if exp.is_empty() {
                quiet.insert(name.clone());
            }
            for e in exp {
                let sev = e["exp_labels"]["severity"].as_str().unwrap().to_string();
                assert!(
                    e["exp_annotations"]["runbook"].as_str().is_some(),
                    "{name}: the test pins the rendered annotations"
                );
                firing.insert((name.clone(), sev));
            }
        }
    }
    for (a, sev) in &want {
        assert!(
            firing.contains(&(a.clone(), sev.clone())),
            "{a} ({sev}) never tested firing"
        );
        assert!(quiet.contains(a), "{a} never tested not firing");
    }
    for f in &firing {
        assert!(
            want.contains(f),
            "test of an alert that does not exist: {f:?}"
        );
    }
}

/// Families with netns labels (per-namespace series).
fn per_netns(name: &str) -> bool {
    FAMILIES
        .iter()
        .any(|f| f.name == name && f.labels.contains(&"netns"))
}

/// `ctdoctor_*` metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    tokens(expr)
        .into_iter()
        .filter(|t| t.starts_with("ctdoctor_"))
        .collect()
}

/// Identifiers (with colons, for recording rules) of an expression.
fn tokens(expr: &str) -> Vec<String> {
    // Strings are not identifiers: drop "..." first.
    let mut clean = String::new();
    let mut in_str = false;
    for c in expr.chars() {
        if c == '"' {
            in_str = !in_str;
            clean.push(' ');
        } else if !in_str {
            clean.push(c);
        }
    }
    clean
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_alert_has_summary_description_and_the_check_to_run() {
    for (_, r) in rules() {
        let Some(name) = s(&r, "alert") else {
            continue;
        };
        let ann = &r["annotations"];
        for k in ["summary", "description", "runbook"] {
            assert!(
                s(ann, k).is_some_and(|v| v.len() > 20),
                "{name}: annotation {k}"
            );
        }
        let runbook = s(ann, "runbook").unwrap();
        assert!(runbook.contains("ctdoctor check"), "{name}: {runbook}");
        let expr = s(&r, "expr").unwrap();
        // Per-namespace alerts name the namespace to check.
        let recorded = expr.contains("netns:ctdoctor_");
        if recorded || metric_names(expr).iter().any(|m| per_netns(m)) {
            assert!(
                runbook.contains(
                    "{{ if $labels.netns_name }}ctdoctor check --netns '{{ reReplaceAll \"^pid \" \"\" $labels.netns_name }}'"
                ),
                "{name}: per-namespace alert without --netns in its runbook: {runbook}"
            );
        }
        // The usage and rate alerts wait (`for`); one-off events need not.
        if !expr.contains("increase(ctdoctor_conntrack_table_full_log_lines") {
            assert!(s(&r, "for").is_some(), "{name}: no `for`");
        }
    }
}

/// Recording rule name → the family it is computed from.
fn recorded() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (_, r) in rules() {
        if let Some(rec) = s(&r, "record") {
            let names = metric_names(s(&r, "expr").unwrap());
            m.insert(rec.to_string(), names[0].clone());
        }
    }
    m
}

/// Check that `expr` uses only exported metrics, defined recording rules,
/// and label names those series have.
fn check_names(what: &str, expr: &str) {
    let rec = recorded();
    let labels_of = |name: &str| -> Option<Vec<&'static str>> {
        let fam = rec.get(name).map(String::as_str).unwrap_or(name);
        FAMILIES
            .iter()
            .find(|f| f.name == fam)
            .map(|f| f.labels.to_vec())
    };
    let all_labels: BTreeSet<&str> = FAMILIES
        .iter()
        .flat_map(|f| f.labels.iter().copied())
        .chain(["instance", "job"])
        .collect();
    for t in tokens(expr) {
        if t.starts_with("ctdoctor_") {
            assert!(labels_of(&t).is_some(), "{what}: {t} is no exported metric");
        } else if t.matches(':').count() == 2 {
            assert!(
                rec.contains_key(&t),
                "{what}: {t} is no recording rule of {RULES}"
            );
        }
    }
    // Label matchers: metric{label op "value", ...}.
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let before = &rest[..i];
        let metric: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let end = rest[i..].find('}').expect("closing brace") + i;
        let inner = &rest[i + 1..end];
        if let Some(labels) = labels_of(&metric) {
            for m in inner.split(',').filter(|m| !m.trim().is_empty()) {
                let l = m.split(['=', '!']).next().unwrap().trim().trim_matches('~');
                assert!(
                    l == "instance" || l == "job" || labels.contains(&l),
                    "{what}: {metric} has no label {l}"
                );
            }
        }
        rest = &rest[end + 1..];
    }
    // Grouping and matching labels: by (...), on (...), without (...).
    for kw in ["by", "on", "without", "ignoring"] {
        let mut rest = expr;
        while let Some(i) = rest.find(&format!("{kw} (")) {
            let open = i + kw.len() + 1;
            let close = rest[open..].find(')').unwrap() + open;
            for l in rest[open + 1..close].split(',') {
                let l = l.trim();
                assert!(all_labels.contains(l), "{what}: no series has label {l}");
            }
            rest = &rest[close..];
        }
    }
}

#[test]
fn rules_and_dashboard_use_only_exported_names() {
    for (_, r) in rules() {
        let what = s(&r, "alert").or(s(&r, "record")).unwrap().to_string();
        let expr = s(&r, "expr").unwrap();
        check_names(&what, expr);
        if let Some(rec) = s(&r, "record") {
            assert!(
                rec.starts_with("netns:ctdoctor_"),
                "{rec}: level:metric:ops"
            );
        }
    }
    for (title, expr) in dashboard_queries() {
        check_names(&title, &expr);
    }
}

/// Every panel's queries: (panel title, expr).
fn dashboard_queries() -> Vec<(String, String)> {
    let d: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

#[test]
fn dashboard_is_well_formed() {
    let d: serde_json::Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert_eq!(d["uid"], "ctdoctor-conntrack");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "instance", "netns"]);
    let mut ids = BTreeSet::new();
    let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(titles.insert(title), "two panels titled {title}");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 20),
            "{title}: no description"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{title}: refId");
            let expr = t["expr"].as_str().unwrap();
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: not filtered by $instance: {expr}"
            );
            let netns = expr.contains("netns:") || metric_names(expr).iter().any(|m| per_netns(m));
            let node_wide = expr.contains("_limit{")
                || expr.contains("full_table_bytes{")
                || expr.contains("softnet_")
                || expr.contains("unattributed");
            if netns && !node_wide {
                assert!(
                    expr.contains("netns=~\"$netns\""),
                    "{title}: not filtered by $netns: {expr}"
                );
            }
        }
    }
    // The panels the brief asks for.
    for t in [
        "Entries vs limit",
        "Entries by state",
        "Drops, early drops, insert failures",
        "Time to full",
        "Findings of ctdoctor check",
        "Memory of a full table",
    ] {
        assert!(titles.contains(t), "no panel {t}");
    }
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let keys: BTreeMap<String, String> = unit_keys(&read(UNIT)).into_iter().collect();
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("Restart", "on-failure"),
        ("RestrictNamespaces", "yes"),
    ] {
        assert_eq!(keys.get(k).map(String::as_str), Some(v), "{k}");
    }
    // Reading /dev/kmsg: these would hide it.
    for k in [
        "ProtectKernelLogs",
        "PrivateDevices",
        "PrivateNetwork",
        "ProcSubset",
    ] {
        assert!(!keys.contains_key(k), "{k} breaks a source");
    }
    assert_eq!(
        unit_capabilities(false),
        ["CAP_NET_ADMIN", "CAP_SYSLOG", "CAP_SYS_PTRACE"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        exec_start(false)[..2],
        ["/usr/local/bin/ctdoctor", "exporter"]
    );
    assert!(exec_start(true).contains(&"--all-netns".to_string()));

    if !need("systemd-analyze", "systemd-analyze verify of the unit") {
        return;
    }
    // The unit as installed, with ExecStart pointing at the binary built
    // here (verify checks that the executable exists); alone, then with
    // the --all-netns drop-in beside it.
    let bin = crate::common::bin();
    let bin = bin.to_str().unwrap();
    for with_dropin in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("ctdoctor-exporter.service");
        std::fs::write(&unit, read(UNIT).replace("/usr/local/bin/ctdoctor", bin)).unwrap();
        if with_dropin {
            let d = dir.path().join("ctdoctor-exporter.service.d");
            std::fs::create_dir(&d).unwrap();
            std::fs::write(
                d.join("all-netns.conf"),
                read(DROPIN).replace("/usr/local/bin/ctdoctor", bin),
            )
            .unwrap();
        }
        let unit_s = unit.to_str().unwrap();
        let (ok, said) = run_in(dir.path(), "systemd-analyze", &["verify", unit_s]);
        // verify exits 0 on unknown keys and names: any output is a failure.
        assert!(
            ok && said.trim().is_empty(),
            "systemd-analyze verify (drop-in: {with_dropin}):\n{said}"
        );
        let (ok, said) = run_in(
            dir.path(),
            "systemd-analyze",
            &["security", "--offline=true", unit_s],
        );
        assert!(ok, "systemd-analyze security:\n{said}");
        let score: f64 = said
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split(": ")
                    .nth(1)
            })
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
        eprintln!(
            "systemd-analyze security (drop-in: {with_dropin}): exposure {score} (0 = locked down, 10 = unprotected)"
        );
        assert!(score <= 4.0, "exposure {score}:\n{said}");
        let dropped = |cap: &str| {
            said.lines()
                .any(|l| l.contains('✓') && l.contains(&format!("CapabilityBoundingSet=~{cap}")))
        };
        assert_eq!(dropped("CAP_SYS_ADMIN"), !with_dropin, "{said}");
        for cap in [
            "CAP_SYS_MODULE",
            "CAP_(DAC_*|FOWNER|IPC_OWNER)",
            "CAP_SYS_RAWIO",
        ] {
            assert!(dropped(cap), "{cap} not dropped:\n{said}");
        }
    }
}

/// Every document of a multi-document YAML file.
fn docs(rel: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(rel))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// `want` ⊆ `have` as label maps.
fn selects(want: &Value, have: &Value) -> bool {
    want.as_mapping()
        .unwrap()
        .iter()
        .all(|(k, v)| have.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_parse_and_hang_together() {
    let d = docs(K8S);
    let kinds: Vec<&str> = d.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "ServiceAccount", "DaemonSet", "Service"]
    );
    for x in &d {
        assert!(x["apiVersion"].as_str().is_some() && x["metadata"]["name"].as_str().is_some());
        if x["kind"] != "Namespace" {
            assert_eq!(x["metadata"]["namespace"], "ctdoctor");
        }
    }
    let ds = by_kind(&d, "DaemonSet");
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["hostNetwork"], Value::Bool(true));
    assert_eq!(spec["hostPID"], Value::Bool(true));
    assert!(selects(
        &ds["spec"]["selector"]["matchLabels"],
        &pod["metadata"]["labels"]
    ));
    let c = &spec["containers"][0];
    // The same command line as the systemd unit's --all-netns variant.
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace('=', " "))
        .flat_map(|a| a.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(args, exec_start(true)[1..]);
    // The same capabilities as the unit + drop-in.
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let added: BTreeSet<String> = sc["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    assert_eq!(added, unit_capabilities(true));
    assert_eq!(sc["privileged"], Value::Bool(false));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    // Host paths: all mounted read-only.
    let host_paths: BTreeSet<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(!host_paths.is_empty());
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert_eq!(m["readOnly"], Value::Bool(true), "{m:?}");
    }
    let mounted: BTreeSet<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(mounted, host_paths);
    for k in ["cpu", "memory"] {
        assert!(
            c["resources"]["requests"][k].as_str().is_some(),
            "request {k}"
        );
        assert!(c["resources"]["limits"][k].as_str().is_some(), "limit {k}");
    }
    for p in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(c[p]["httpGet"]["path"], "/healthz", "{p}");
        assert_eq!(c[p]["httpGet"]["port"], "metrics", "{p}");
    }
    let port = &c["ports"][0];
    assert_eq!(port["name"], "metrics");
    assert_eq!(port["containerPort"].as_u64(), Some(9651));
    assert!(args.contains(&"0.0.0.0:9651".to_string()));
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "9651");
    // The Service selects the pods; its name is the job the alerts expect.
    let svc = by_kind(&d, "Service");
    assert_eq!(svc["metadata"]["name"], "ctdoctor");
    assert!(read(RULES).contains("up{job=\"ctdoctor\"}"));
    assert!(selects(
        &svc["spec"]["selector"],
        &pod["metadata"]["labels"]
    ));
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(9651));
    // The ServiceMonitor selects the Service, by port name.
    let sm = docs(SERVICE_MONITOR);
    let sm = by_kind(&sm, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    ));
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"][0], "ctdoctor");

    // The Kubernetes schemas, strictly (unknown fields fail). The
    // ServiceMonitor is a CRD: not in them.
    let kv = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| "kubernetes-validate".into());
    let found = Path::new(&kv).is_file() || testns::have(&kv);
    if !testns::need(
        found,
        &format!("schema validation of deploy/kubernetes: `{kv}` is not installed (scripts/test.sh installs it)"),
    ) {
        return;
    }
    let (ok, said) = run_in(&repo(), &kv, &["--strict", "--no-warn", K8S]);
    assert!(ok, "kubernetes-validate --strict {K8S}:\n{said}");
    assert_eq!(said.matches("passed").count(), 4, "{said}");
}

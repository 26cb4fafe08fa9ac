//! The import rule of docs/ARCHITECTURE.md, enforced: every `crate::X`
//! named in crates/ctdoctor/src outside comments and `#[cfg(test)]`
//! modules is an edge from the file's top-level module to `X`, and the
//! edges must keep the layers: no circle among top-level modules, no
//! decider (checks, plan, notrack) importing another, tune (the one
//! writer) importing no decider, and the layers below the deciders
//! importing nothing above them. The checker is a pure function of the
//! files' texts, also run on texts with a violation planted, so this test
//! can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules that decide (judge, plan, generate rules).
const DECIDERS: &[&str] = &["checks", "plan", "notrack"];
/// The modules above the deciders: commands, renderers, long-running
/// front ends, the writer.
const UPPER: &[&str] = &[
    "cmd", "lab", "exporter", "report", "tui", "snapfile", "tune",
];
/// The layers below the deciders, each with what it may import.
const BELOW: &[(&str, &[&str])] = &[
    ("util", &["infile"]),
    ("infile", &[]),
    ("outfile", &["infile"]),
    ("confine", &[]),
    ("kernel", &[]),
    ("knobs", &[]),
    ("counters", &[]),
    ("table", &["kernel", "util", "knobs"]),
    ("drops", &["util"]),
    (
        "host",
        &[
            "confine", "infile", "knobs", "table", "drops", "util", "kernel",
        ],
    ),
    ("snapshot", &["host", "knobs"]),
    (
        "advice",
        &["host", "kernel", "knobs", "snapshot", "table", "util"],
    ),
];

/// `crate::X` edges of one file's text: comments and the test module
/// left out.
fn edges_of(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_tests = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        if in_tests || t.starts_with("//") {
            continue;
        }
        let code = match t.find("//") {
            Some(i) if !t[..i].contains('"') => &t[..i],
            _ => t,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

/// The violations of the rule in `files` (relative path under src, text).
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut why: BTreeMap<(String, String), String> = BTreeMap::new();
    for (path, text) in files {
        let top = path
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        for to in edges_of(text) {
            if to != top {
                why.entry((top.clone(), to.clone()))
                    .or_insert_with(|| path.clone());
                graph.entry(top.clone()).or_default().insert(to);
            }
        }
    }
    let mut out = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            let at = &why[&(from.clone(), to.clone())];
            let decider = |m: &str| DECIDERS.contains(&m);
            if decider(from) && decider(to) {
                out.push(format!("decider {from} imports decider {to} ({at})"));
            }
            if from == "tune" && decider(to) {
                out.push(format!("tune, the writer, imports decider {to} ({at})"));
            }
            if let Some((_, allowed)) = BELOW.iter().find(|(m, _)| m == from) {
                if !allowed.contains(&to.as_str()) {
                    out.push(format!(
                        "{from} (below the deciders) imports {to} ({at}); it may import {allowed:?}"
                    ));
                }
            } else if !DECIDERS.contains(&from.as_str()) && !UPPER.contains(&from.as_str()) {
                out.push(format!(
                    "{from} is in no layer: add it to tests/offline/architecture.rs and docs/ARCHITECTURE.md"
                ));
            }
        }
    }
    // advice is pure: of host it may name only the plain data (host::fact).
    for (path, text) in files {
        if path.starts_with("advice/") {
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (i, _) in code.match_indices("crate::host::") {
                if !code[i + "crate::host::".len()..].starts_with("fact") {
                    out.push(format!("advice ({path}) names host beyond host::fact"));
                }
            }
        }
    }
    // Circles: strongly connected components of more than one module.
    for comp in circles(&graph) {
        out.push(format!("import circle: {}", comp.join(" -> ")));
    }
    out.sort();
    out.dedup();
    out
}

/// Tarjan's strongly connected components with more than one node.
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct S<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.g.get(v) {
            for w in ws {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let l = s.low[w].min(s.low[v]);
                    s.low.insert(v, l);
                } else if s.on.contains(w) {
                    let l = s.index[w].min(s.low[v]);
                    s.low.insert(v, l);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every .rs file under crates/ctdoctor/src, relative, with its text.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut todo = vec![root.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read src").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&root).expect("under src");
                out.push((
                    rel.to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).expect("read a source file"),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_tree_keeps_its_layers() {
    let files = sources();
    assert!(files.len() > 50, "found only {} files", files.len());
    let v = violations(&files);
    assert!(v.is_empty(), "{}", v.join("\n"));
}

#[test]
fn a_planted_violation_is_found() {
    let mut files = sources();
    // A decider reaching into another.
    files.push((
        "checks/planted.rs".into(),
        "use crate::plan::size;\n".into(),
    ));
    // The writer reaching into a decider.
    files.push((
        "tune/planted.rs".into(),
        "fn f() { crate::checks::run_all(); }\n".into(),
    ));
    // A lower layer reaching up, closing a circle.
    files.push((
        "host/planted.rs".into(),
        "use crate::snapshot::Facts;\n".into(),
    ));
    // Pure advice reaching into an I/O reader.
    files.push((
        "advice/planted.rs".into(),
        "fn f() { crate::host::entries::dump(); }\n".into(),
    ));
    let v = violations(&files).join("\n");
    assert!(v.contains("decider checks imports decider plan"), "{v}");
    assert!(
        v.contains("tune, the writer, imports decider checks"),
        "{v}"
    );
    assert!(
        v.contains("host (below the deciders) imports snapshot"),
        "{v}"
    );
    assert!(v.contains("import circle"), "{v}");
    assert!(
        v.contains("advice (advice/planted.rs) names host beyond host::fact"),
        "{v}"
    );
    // Comments and test modules do not count.
    let quiet = vec![(
        "host/x.rs".into(),
        "// crate::checks\n//! crate::plan\nfn a() {}\n#[cfg(test)]\nmod tests { use crate::checks; }\n"
            .to_string(),
    )];
    assert!(violations(&quiet).is_empty(), "{:?}", violations(&quiet));
}

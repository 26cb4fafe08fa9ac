//! The exposition writer: metric families and samples in, Prometheus text
//! format 0.0.4 or OpenMetrics 1.0.0 text out. Our own ~150 lines instead of
//! a crate: `prometheus-client` writes OpenMetrics only (its counter
//! families are named without `_total`, which `promtool check metrics`
//! 2.42 rejects as 0.0.4), and the `prometheus` crate is built around a
//! global mutable registry, while our metrics are a pure function of facts.
//!
//! The two formats differ only in framing: OpenMetrics names a counter's
//! family without its `_total` suffix, escapes `"` in HELP, and ends with
//! `# EOF`. Samples, labels and values are written the same way.
//!
//! Not for: deciding what to export (`metrics`) or HTTP (`http`).

use std::fmt::Write as _;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family: what `# HELP` / `# TYPE` say, which labels its
/// samples carry, and (for the docs and the landing page) where its values
/// come from and what reading them needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The name as 0.0.4 writes it: counters end in `_total`.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Label names, in the order samples write them.
    pub labels: &'static [&'static str],
    /// The fact or state the value comes from.
    pub source: &'static str,
    /// The privilege reading it needs ("none" when any user can).
    pub needs: &'static str,
}

/// A sample value: counts stay exact integers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as u64)
    }
}

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Text,
    /// OpenMetrics 1.0.0, only when the scraper's Accept header asks.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Samples gathered per family, written in the order of the family table
/// (so every family's samples are contiguous, as both formats require).
pub struct Exposition {
    families: &'static [Family],
    samples: Vec<Vec<(String, Value)>>,
}

impl Exposition {
    pub fn new(families: &'static [Family]) -> Exposition {
        Exposition {
            families,
            samples: vec![Vec::new(); families.len()],
        }
    }

    /// Add one sample of `family` (which must be in the table) with label
    /// values in the family's label order.
    pub fn push(&mut self, family: &Family, values: &[&str], v: impl Into<Value>) {
        let Some(i) = self.families.iter().position(|f| f.name == family.name) else {
            debug_assert!(false, "{} is not in the family table", family.name);
            return;
        };
        debug_assert_eq!(values.len(), family.labels.len(), "{}", family.name);
        let mut labels = String::new();
        for (k, val) in family.labels.iter().zip(values) {
            labels.push(if labels.is_empty() { '{' } else { ',' });
            labels.push_str(k);
            labels.push_str("=\"");
            escape_into(&mut labels, val, true);
            labels.push('"');
        }
        if !labels.is_empty() {
            labels.push('}');
        }
        self.samples[i].push((labels, v.into()));
    }

    /// Number of samples gathered.
    pub fn len(&self) -> usize {
        self.samples.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write every family that has samples.
    pub fn write(&self, format: Format) -> String {
        let mut out = String::with_capacity(64 * self.len() + 4096);
        for (f, samples) in self.families.iter().zip(&self.samples) {
            if samples.is_empty() {
                continue;
            }
            let (family_name, suffix) = match (format, f.kind) {
                (Format::OpenMetrics, Kind::Counter) => match f.name.strip_suffix("_total") {
                    Some(base) => (base, "_total"),
                    None => (f.name, ""),
                },
                _ => (f.name, ""),
            };
            out.push_str("# HELP ");
            out.push_str(family_name);
            out.push(' ');
            escape_into(&mut out, f.help, format == Format::OpenMetrics);
            out.push('\n');
            let _ = writeln!(out, "# TYPE {family_name} {}", f.kind.as_str());
            for (labels, v) in samples {
                out.push_str(family_name);
                out.push_str(suffix);
                out.push_str(labels);
                out.push(' ');
                write_value(&mut out, *v);
                out.push('\n');
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// Escape `\`, newline and (in label values and OpenMetrics HELP) `"`.
fn escape_into(out: &mut String, s: &str, quote: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integers exactly; floats as Rust prints them (never an exponent form
/// the parsers reject); NaN and infinities as both formats spell them.
fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(x) if x.is_nan() => out.push_str("NaN"),
        Value::Float(x) if x.is_infinite() => out.push_str(if x > 0.0 { "+Inf" } else { "-Inf" }),
        Value::Float(x) => {
            let _ = write!(out, "{x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMS: &[Family] = &[
        Family {
            name: "x_drop_total",
            kind: Kind::Counter,
            help: "Packets dropped.\nSecond \"line\" \\ here.",
            labels: &["netns", "state"],
            source: "test",
            needs: "none",
        },
        Family {
            name: "x_entries",
            kind: Kind::Gauge,
            help: "Entries.",
            labels: &[],
            source: "test",
            needs: "none",
        },
        Family {
            name: "x_unused",
            kind: Kind::Gauge,
            help: "Never pushed.",
            labels: &[],
            source: "test",
            needs: "none",
        },
    ];

    #[test]
    fn text_and_openmetrics_by_hand() {
        let mut e = Exposition::new(FAMS);
        e.push(&FAMS[1], &[], 0.5);
        e.push(&FAMS[0], &["4026531840", "TIME_\"W\"\n\\"], 7u64);
        e.push(&FAMS[0], &["1", ""], f64::NAN);
        assert_eq!(e.len(), 3);
        assert_eq!(
            e.write(Format::Text),
            "# HELP x_drop_total Packets dropped.\\nSecond \"line\" \\\\ here.\n\
             # TYPE x_drop_total counter\n\
             x_drop_total{netns=\"4026531840\",state=\"TIME_\\\"W\\\"\\n\\\\\"} 7\n\
             x_drop_total{netns=\"1\",state=\"\"} NaN\n\
             # HELP x_entries Entries.\n\
             # TYPE x_entries gauge\n\
             x_entries 0.5\n"
        );
        let om = e.write(Format::OpenMetrics);
        assert!(om.starts_with(
            "# HELP x_drop Packets dropped.\\nSecond \\\"line\\\" \\\\ here.\n# TYPE x_drop counter\nx_drop_total{"
        ));
        assert!(om.ends_with("x_entries 0.5\n# EOF\n"));
        assert!(!om.contains("x_unused"));
    }

    #[test]
    fn values() {
        let mut s = String::new();
        for v in [
            Value::Int(u64::MAX),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::Float(1e-7),
            Value::Float(3.0),
        ] {
            write_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "18446744073709551615 +Inf -Inf 0.0000001 3 ");
    }
}

//! Small helpers shared by commands: durations, bounded numeric flags,
//! human numbers.

/// Parse "5s", "500ms", "2m", "1h" or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86_400_000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 5s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * mult_ms > 1e12 {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(std::time::Duration::from_millis(
        (v * mult_ms).round() as u64
    ))
}

/// The shortest `--sample` that can tell a rise from no rise: per-CPU
/// counters of a few packets per second would read 0 over milliseconds.
pub const MIN_SAMPLE: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest `--sample` (a check is an interactive tool).
pub const MAX_SAMPLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Parse a `--sample` duration: [`parse_duration`], at least [`MIN_SAMPLE`]
/// and at most [`MAX_SAMPLE`].
pub fn parse_sample(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_SAMPLE {
        return Err(format!(
            "{s:?} is too short: a sample shorter than 1s sees too few packets to tell a rise \
             from none (try 5s)"
        ));
    }
    if d > MAX_SAMPLE {
        return Err(format!("{s:?} is too long (at most 1h)"));
    }
    Ok(d)
}

/// A whole number `s` within `lo..=hi` (for flags: a clear error instead of
/// an overflow, a huge allocation or a silent clamp later).
pub fn parse_int_in<T>(s: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number from {lo} to {hi}"))?;
    if v < lo || v > hi {
        return Err(format!("{s} is out of range: from {lo} to {hi}"));
    }
    Ok(v)
}

/// A finite number `s` within `lo..=hi` (NaN, inf and 1e308 refused).
pub fn parse_f64_in(s: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || v < lo || v > hi {
        return Err(format!("{s} is out of range: from {lo} to {hi}"));
    }
    Ok(v)
}

/// The largest table a plan can be asked for (`--peak`): nf_conntrack_max
/// is a signed 32-bit sysctl, so no table holds more entries.
pub const MAX_PEAK: u64 = i32::MAX as u64;

/// `--peak N`: 1 to [`MAX_PEAK`].
pub fn parse_peak(s: &str) -> Result<u64, String> {
    parse_int_in(s, 1, MAX_PEAK).map_err(|e| {
        format!("{e} (nf_conntrack_max is a 32-bit signed sysctl: no table holds more)")
    })
}

/// The highest `--rate` (new connections per second) a plan takes: far
/// above what one host's conntrack inserts (a few million per second at
/// most), and low enough that rate × a state's timeout stays a number of
/// entries a table can hold.
pub const MAX_RATE: f64 = 10_000_000.0;

/// `--rate CONN_PER_S`: more than 0, at most [`MAX_RATE`].
pub fn parse_rate(s: &str) -> Result<f64, String> {
    match parse_f64_in(s, 0.0, MAX_RATE) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?}: give new connections per second, more than 0 and at most {MAX_RATE}"
        )),
    }
}

/// The largest `--headroom` factor: more than 100 × the demand is a typo,
/// and beyond it sizes stop being numbers a kernel takes.
pub const MAX_HEADROOM: f64 = 100.0;

/// `--headroom X`: a factor from 1 to [`MAX_HEADROOM`].
pub fn parse_headroom(s: &str) -> Result<f64, String> {
    parse_f64_in(s, 1.0, MAX_HEADROOM).map_err(|e| format!("{e}: must be a factor of at least 1"))
}

/// An existing directory for `--root DIR` (empty means `/`): a file, a
/// device or a missing path would read as a machine with nothing in it.
pub fn parse_root(s: &str) -> Result<std::path::PathBuf, String> {
    if s.is_empty() {
        return Ok("/".into());
    }
    match std::fs::metadata(s) {
        Ok(m) if m.is_dir() => Ok(s.into()),
        Ok(m) => Err(format!(
            "{s} is {}, not a directory",
            crate::infile::kind(&m.file_type())
        )),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

/// `top --interval`: at least 200 ms (a redraw needs a dump of the whole
/// table), at most 300 s (the `+` key's ceiling).
pub fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d < std::time::Duration::from_millis(200) || d > std::time::Duration::from_secs(300) {
        return Err(format!("{s:?} is out of range: from 200ms to 300s"));
    }
    Ok(d)
}

/// At most `n` characters of `s`, for messages.
pub fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `part` of `whole` in percent, one decimal (0 when `whole` is 0).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// A fraction (0..1) as "12.3 %".
pub fn pct_text(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

/// "1 interface", "3 interfaces": `n` and `word`, plural with an `s`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units: "366.2 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap().as_millis(), 5000);
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("3").unwrap().as_secs(), 3);
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn samples_have_a_floor() {
        assert!(parse_sample("0s").is_err());
        assert!(parse_sample("1ms").is_err());
        assert!(parse_sample("999ms").is_err());
        assert_eq!(parse_sample("1s").unwrap().as_secs(), 1);
        assert!(parse_sample("2h").is_err());
    }

    #[test]
    fn bounded_flags() {
        assert_eq!(parse_int_in("64", 1usize, 64), Ok(64));
        for bad in ["0", "65", "-1", "18446744073709551616", "x", ""] {
            assert!(parse_int_in(bad, 1usize, 64).is_err(), "{bad}");
        }
        assert_eq!(parse_peak("2147483647"), Ok(2147483647));
        assert!(parse_peak("2147483648").is_err());
        assert!(parse_peak("0").is_err());
        for bad in ["0", "-1", "nan", "inf", "1e308", "10000001"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0.5", "nan", "101", "inf"] {
            assert!(parse_headroom(bad).is_err(), "{bad}");
        }
        assert!(parse_root("/dev/zero")
            .unwrap_err()
            .contains("character device"));
        assert!(parse_root("/no/such/dir").is_err());
        assert_eq!(parse_root(""), Ok("/".into()));
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(384 * 1024 * 1024), "384.0 MiB");
    }
}

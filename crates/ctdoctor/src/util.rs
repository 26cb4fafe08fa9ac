//! Small helpers shared by commands: durations, human numbers.

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
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(384 * 1024 * 1024), "384.0 MiB");
    }
}

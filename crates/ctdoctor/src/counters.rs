//! Arithmetic on kernel counters read at two instants: how much a counter
//! rose, with one rule for the 32-bit per-CPU counters (conntrack stats,
//! softnet_stat) shared by the checks (rates over `check --sample`) and
//! the live view (`top`), so both read a wrap the same way.
//!
//! Not for: reading counters (`host::stat`, `host::sockets`) or judging them.

/// How much a 32-bit kernel counter rose, or a sum of them over a fixed set
/// of CPUs (conntrack stats: one row per possible CPU, `unsigned int`).
/// One CPU's counter wrapping makes the sum fall by 2^32, so the rise is
/// the difference modulo 2^32 (a real rise of 2^32 within one sample is
/// out of reach). `None` without an earlier reading.
pub fn rise_u32(now: u64, earlier: Option<u64>) -> Option<u64> {
    earlier.map(|e| now.wrapping_sub(e) & u64::from(u32::MAX))
}

/// How much a counter that never wraps rose (64-bit kernel counters,
/// netstat, interface statistics): 0 when it went down (a reset, a driver
/// reload). `None` without an earlier reading.
pub fn rise(now: u64, earlier: Option<u64>) -> Option<u64> {
    earlier.map(|e| now.saturating_sub(e))
}

/// Per-second rate of `delta` over `secs`, two decimals.
pub fn per_sec(delta: u64, secs: Option<f64>) -> Option<f64> {
    let s = secs.filter(|s| *s > 0.0)?;
    Some((delta as f64 / s * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_no_rise_and_rates_round() {
        assert_eq!(rise(5, Some(10)), Some(0));
        assert_eq!(rise(15, Some(10)), Some(5));
        assert_eq!(per_sec(10, Some(4.0)), Some(2.5));
        assert_eq!(per_sec(1, Some(3.0)), Some(0.33));
        assert_eq!(per_sec(1, Some(0.0)), None);
        assert_eq!(per_sec(1, None), None);
    }

    #[test]
    fn a_wrap_is_a_rise() {
        assert_eq!(rise_u32(30, Some(10)), Some(20));
        assert_eq!(rise_u32(10, None), None);
        // One CPU's counter wrapped: 2^32 − 5 → 5 is a rise of 10.
        assert_eq!(rise_u32(5, Some(u64::from(u32::MAX) - 4)), Some(10));
        // A sum over two CPUs above 2^32, one of them wrapping.
        let before = u64::from(u32::MAX) + 100;
        let after = before + 250 - (1 << 32);
        assert_eq!(rise_u32(after, Some(before)), Some(250));
    }
}

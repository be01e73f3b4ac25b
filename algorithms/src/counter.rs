//! Cumulative counters (energy registers in kWh): consumption between two readings.

/// Consumption from reading `prev` to reading `cur` of a counter that only grows. A drop
/// is a reset (meter replaced, register wrapped or cleared): the counter restarted from
/// zero, so the consumption since is `cur` itself, never a negative amount.
pub fn increment(prev: f64, cur: f64) -> f64 {
    if cur >= prev { cur - prev } else { cur }
}

/// [`increment`] for integer registers (e.g. Wh counts). Saturates instead of wrapping.
pub fn increment_i64(prev: i64, cur: i64) -> i64 {
    if cur >= prev {
        cur.saturating_sub(prev)
    } else {
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_and_resets() {
        assert_eq!(increment(10.0, 12.5), 2.5);
        assert_eq!(increment(10.0, 10.0), 0.0);
        // Reset: 1000.0 -> 3.0 means 3 kWh since the restart, not -997.
        assert_eq!(increment(1000.0, 3.0), 3.0);
        assert_eq!(increment_i64(5, 9), 4);
        assert_eq!(increment_i64(9, 2), 2);
        assert_eq!(increment_i64(i64::MIN, i64::MAX), i64::MAX);
    }
}

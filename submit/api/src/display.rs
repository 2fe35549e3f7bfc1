//! How quantities are printed to users, the same way by the daemon and the commands.

/// Bytes with the largest binary unit that keeps the number readable (`4GiB`, `1.5GiB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, unit) in UNITS {
        if bytes >= unit {
            let v = bytes as f64 / unit as f64;
            return if (v - v.round()).abs() < 0.005 {
                format!("{}{name}", v.round() as u64)
            } else {
                format!("{v:.1}{name}")
            };
        }
    }
    format!("{bytes}B")
}

/// Seconds as `HH:MM:SS` (PBS style), with days when needed (`1-01:00:00`).
pub fn hms(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// A Unix time (seconds) as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn timestamp(secs: f64) -> String {
    let t = secs.max(0.0) as i64;
    let (days, rem) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times() {
        assert_eq!(size(4 << 30), "4GiB");
        assert_eq!(size(3 << 29), "1.5GiB");
        assert_eq!(size(10), "10B");
        assert_eq!(hms(3725.0), "01:02:05");
        assert_eq!(hms(90_000.0), "1-01:00:00");
        assert_eq!(timestamp(0.0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_795_000_000.0), "2026-11-18 11:06:40");
    }
}

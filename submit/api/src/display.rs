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

/// Reads a time as users give it (UTC): `2026-12-03`, `2026-12-03T18:30`, `2026-12-03 18:30:15`,
/// `now`, or `now-2h` (a duration before now, as [`crate::units::parse_duration_ms`] reads
/// it); `now` is the Unix time in seconds. Answers Unix seconds.
pub fn parse_time(text: &str, now: f64) -> Result<f64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a time: write YYYY-MM-DD[THH:MM[:SS]] (UTC), now, or now-DURATION");
    if let Some(rest) = t.strip_prefix("now") {
        return match rest.strip_prefix('-') {
            None if rest.is_empty() => Ok(now),
            None => Err(bad()),
            Some(d) => Ok(now - crate::units::parse_duration_ms(d)? as f64 / 1000.0),
        };
    }
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let numbers = |s: &str, sep: char| -> Result<Vec<i64>, String> {
        s.split(sep).map(|p| p.parse::<i64>().map_err(|_| bad())).collect()
    };
    let [y, m, d] = numbers(date, '-')?[..] else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let (hh, mm, ss) = match clock.map(|c| numbers(c, ':')).transpose()?.as_deref() {
        None => (0, 0, 0),
        Some([h, m]) => (*h, *m, 0),
        Some([h, m, s]) => (*h, *m, *s),
        Some(_) => return Err(bad()),
    };
    if hh > 23 || mm > 59 || ss > 60 || hh < 0 || mm < 0 || ss < 0 {
        return Err(bad());
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64)
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

    #[test]
    fn times_read_back_what_timestamps_print() {
        assert_eq!(parse_time("2026-11-18 11:06:40", 0.0), Ok(1_795_000_000.0));
        assert_eq!(parse_time("2026-11-18T11:06:40", 0.0), Ok(1_795_000_000.0));
        assert_eq!(parse_time("1970-01-01", 0.0), Ok(0.0));
        assert_eq!(parse_time("2000-03-01T00:00", 0.0), Ok(951_868_800.0));
        assert_eq!(parse_time("now-1h", 7200.0), Ok(3600.0));
        assert_eq!(parse_time("now", 5.0), Ok(5.0));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-18T25:00",
            "2026-11",
            "nowish",
            "now-x",
        ] {
            assert!(parse_time(bad, 0.0).is_err(), "{bad}");
        }
    }
}

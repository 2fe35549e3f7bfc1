//! Human quantities in configuration and job files: sizes (`4GiB`), durations (`1h30m`,
//! `01:30:00`) and bandwidths (`1GiB/s`), parsed and printed the same way everywhere.
//!
//! Sizes use binary multiples whatever the spelling (`4G`, `4GB` and `4GiB` are all 4 GiB), as PBS
//! and Slurm do for memory. A size needs a unit: a bare number is refused rather than guessed.

/// Parses a size such as `512MiB`, `4G`, `1.5TiB` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "`{text}` is not a size: expected a number and a unit, like 512MiB or 4GiB"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size: `{num}` is not a number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "" => return Err(format!("`{text}` has no unit: write it like {num}MiB or {num}GiB")),
        other => {
            return Err(format!(
                "`{text}`: unknown size unit `{other}` (use B, KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration such as `20s`, `5m`, `1h30m`, `1.5h`, `500ms`, `01:30:00` (PBS style) or a
/// bare number of seconds, into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a duration: write it like 90s, 5m, 1h30m or 01:30:00");
    if t.is_empty() {
        return Err(bad());
    }
    if t.contains(':') {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let mut secs = 0u64;
        let too_long = || format!("`{text}` is too long a duration");
        for p in &parts {
            let v: u64 = p.parse().map_err(|_| bad())?;
            secs = secs
                .checked_mul(60)
                .and_then(|s| s.checked_add(v))
                .ok_or_else(too_long)?;
        }
        return secs.checked_mul(1000).ok_or_else(too_long);
    }
    if let Ok(secs) = t.parse::<f64>() {
        return if secs >= 0.0 && secs.is_finite() {
            Ok((secs * 1000.0).round() as u64)
        } else {
            Err(bad())
        };
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        if n_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ms = match rest[..u_end].trim().to_ascii_lowercase().as_str() {
            "ms" => 1.0,
            "s" | "sec" | "secs" => 1000.0,
            "m" | "min" | "mins" => 60_000.0,
            "h" | "hr" | "hrs" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            _ => return Err(bad()),
        };
        total += value * unit_ms;
        rest = &rest[u_end..];
    }
    Ok(total.round() as u64)
}

/// Parses a bandwidth such as `1GiB/s` or `200MB/s` into bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let size = t
        .strip_suffix("/s")
        .ok_or_else(|| format!("`{text}` is not a bandwidth: write it like 1GiB/s or 200MiB/s"))?;
    parse_size(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_a_clock_duration_too_long_for_milliseconds_is_an_error_not_an_overflow() {
        for t in [
            "18446744073709551615:1",
            "5124095576030431:0:0",
            "307445734561825861:00",
        ] {
            assert!(parse_duration_ms(t).unwrap_err().contains("too long"), "{t}");
        }
        assert_eq!(parse_duration_ms("01:30:00"), Ok(5_400_000));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("96MiB").unwrap(), 96 << 20);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert!(parse_size("4").unwrap_err().contains("no unit"));
        assert!(parse_size("4XB").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("20s").unwrap(), 20_000);
        assert_eq!(parse_duration_ms("1h").unwrap(), 3_600_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("1.5h").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert_eq!(parse_duration_ms("01:30:00").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("2:05").unwrap(), 125_000);
        assert_eq!(parse_duration_ms("42").unwrap(), 42_000);
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("5 parsecs").is_err());
        assert!(parse_duration_ms("").is_err());
    }

    #[test]
    fn bandwidths() {
        assert_eq!(parse_bandwidth("1GiB/s").unwrap(), 1 << 30);
        assert!(parse_bandwidth("1GiB").is_err());
    }
}

//! Go's `time.ParseDuration`, for the admin API's `ban_duration`.
//!
//! GoTrue passes `ban_duration` straight to `time.ParseDuration`, so values
//! like `"24h"`, `"1h30m"` or `"1.5h"` are valid while `"1d"` is not, and the
//! error text ends up in the 400 response. Kept separate because it is pure
//! parsing with its own edge cases and unit tests.

/// Parses a Go duration string into signed nanoseconds, with Go's error text.
pub(crate) fn parse(input: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration \"{input}\"");
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let number_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let number = &s[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        s = &s[number_len..];
        let unit_len = s.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos_per_unit: f64 = match unit {
            "" => return Err(format!("time: missing unit in duration \"{input}\"")),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(format!("time: unknown unit \"{other}\" in duration \"{input}\""));
            }
        };
        total += value * nanos_per_unit;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total as i128;
    Ok(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("24h"), Ok(24 * 3600 * 1_000_000_000));
        assert_eq!(parse("1h30m"), Ok(5400 * 1_000_000_000));
        assert_eq!(parse("1.5h"), Ok(5400 * 1_000_000_000));
        assert_eq!(parse("100ms"), Ok(100_000_000));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("-1s"), Ok(-1_000_000_000));
    }

    #[test]
    fn reports_go_errors() {
        assert_eq!(parse("abc"), Err("time: invalid duration \"abc\"".into()));
        assert_eq!(parse("10"), Err("time: missing unit in duration \"10\"".into()));
        assert_eq!(parse("1d"), Err("time: unknown unit \"d\" in duration \"1d\"".into()));
        assert_eq!(parse(""), Err("time: invalid duration \"\"".into()));
    }
}

//! Retention: `intellifill audit prune --older-than 90d`.
//!
//! The runtime role can never delete audit rows (append-only); pruning runs as the owner role over the
//! direct connection, in batches so it never holds long locks or a huge transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};

const BATCH: i64 = 10_000;

/// `90d`, `12h`, `30m`, `45s`: a retention age. At least one minute.
pub fn parse_age(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("expected a number and a unit like 90d, got {raw:?}"))?;
    let seconds = match unit {
        "d" => n.checked_mul(86_400),
        "h" => n.checked_mul(3_600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => return Err(format!("unknown unit {unit:?}: use d, h, m or s (e.g. 90d)")),
    }
    .ok_or_else(|| format!("{raw:?} is too large"))?;
    if seconds < 60 {
        return Err("the age must be at least one minute".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// Delete audit rows created before `now - age`; returns how many.
pub async fn prune(client: &tokio_postgres::Client, age: Duration) -> anyhow::Result<(u64, DateTime<Utc>)> {
    let cutoff = Utc::now() - chrono::TimeDelta::from_std(age)?;
    let mut total = 0u64;
    loop {
        let n = client
            .execute(
                "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE created_at < $1 LIMIT $2)",
                &[&cutoff, &BATCH],
            )
            .await?;
        total += n;
        if n < BATCH as u64 {
            return Ok((total, cutoff));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_with_units_and_bad_ones_explain_themselves() {
        assert_eq!(parse_age("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_age("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_age("10s").expect_err("too short").contains("at least"));
        assert!(parse_age("90").expect_err("no unit").contains("unknown unit"));
        assert!(parse_age("d").expect_err("no number").contains("expected a number"));
        assert!(parse_age("99999999999999999999d").is_err());
    }
}

//! Times and durations: expirations and wave start times are spans ("2 weeks", "1 day", "6h")
//! added to a point in time in UTC, where a day is always 24 hours. Results are whole seconds,
//! the `YYYY-MM-DDTHH:MM:SSZ` form the TUF specification gives for `expires`.

use crate::error::{self, Result};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use snafu::ResultExt;

/// `base + span`, with calendar units (days, weeks, months, years) counted in UTC, and the
/// fraction of a second of `base` dropped.
pub fn add_span(base: Timestamp, span: Span) -> Result<Timestamp> {
    let base = Timestamp::from_second(base.as_second()).unwrap_or(base);
    base.to_zoned(TimeZone::UTC)
        .checked_add(span)
        .map(|z| z.timestamp())
        .context(error::TimeOverflowSnafu { base, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_in_friendly_and_iso_forms() {
        let base: Timestamp = "2024-01-15T00:00:00Z".parse().unwrap();
        for (text, expected) in [
            ("1 hour", "2024-01-15T01:00:00Z"),
            ("2 weeks", "2024-01-29T00:00:00Z"),
            ("1w", "2024-01-22T00:00:00Z"),
            ("P1D", "2024-01-16T00:00:00Z"),
            ("1 year", "2025-01-15T00:00:00Z"),
            ("-30 days", "2023-12-16T00:00:00Z"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(
                add_span(base, span).unwrap().to_string(),
                expected,
                "{text}"
            );
        }
    }
}

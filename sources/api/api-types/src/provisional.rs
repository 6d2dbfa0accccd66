//! Try-mode settings: a change committed and applied *provisionally*, which the API server
//! reverts by itself unless it is confirmed before its deadline (`apiclient set --try 120s`,
//! `apiclient confirm`). `POST /tx/provisional?tx=T&timeout=120s` starts one and answers with a
//! [`Provisional`], `GET /tx/provisional` shows the pending one (404 when there is none), and
//! `POST /tx/confirm` keeps it. Ballast's own routes; Bottlerocket has no try mode.
//!
//! The timeout is written as the update pause's durations are: a whole number of seconds, or a
//! number followed by `s`, `m` or `h`, from [`MIN_TIMEOUT_SECS`] to [`MAX_TIMEOUT_SECS`];
//! [`parse_timeout`] is the one reader, used by the server for the query and by apiclient for
//! its `--try` argument.

use crate::audit::Caller;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The route that starts (POST), shows (GET) a try.
pub const PATH: &str = "/tx/provisional";

/// The route that keeps the pending try.
pub const CONFIRM_PATH: &str = "/tx/confirm";

/// Shortest timeout accepted, in seconds.
pub const MIN_TIMEOUT_SECS: u64 = 1;

/// Longest timeout accepted, in seconds (one day): a try is a safety net for the next minutes,
/// not a way to schedule a change back.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// The timeout's grammar as an anchored regular expression, for the API document: exactly
/// what [`parse_timeout`] accepts, the range included (1 to 86400 seconds, 1 to 1440 minutes,
/// 1 to 24 hours, no leading zeros).
pub fn timeout_pattern() -> String {
    let seconds = "([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3}|86[0-3][0-9]{2}|86400)s?";
    let minutes = "([1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9]|1440)m";
    let hours = "([1-9]|1[0-9]|2[0-4])h";
    format!("^({seconds}|{minutes}|{hours})$")
}

/// Reads a timeout: `120`, `120s`, `2m` or `1h`. The error is a sentence saying what is wrong
/// and what is allowed.
pub fn parse_timeout(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 60 * 60,
        other => {
            return Err(format!(
                "timeout {text:?} has the unit {other:?}; use s, m or h (e.g. 120s, 2m)"
            ))
        }
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "timeout {text:?} is not a duration; give a whole number with s, m or h (e.g. 120s, 2m)"
        ));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(format!(
            "timeout {text:?} is not a duration; write the number without leading zeros"
        ));
    }
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .unwrap_or(u64::MAX);
    if seconds < MIN_TIMEOUT_SECS {
        return Err(format!(
            "timeout {text:?} is too short; give at least {MIN_TIMEOUT_SECS}s"
        ));
    }
    if seconds > MAX_TIMEOUT_SECS {
        return Err(format!(
            "timeout {text:?} is longer than the limit of {}h",
            MAX_TIMEOUT_SECS / 3600
        ));
    }
    Ok(seconds)
}

/// One key of a try, with the value it had before and the value the try gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvisionalChange {
    /// The full key, e.g. `settings.motd`.
    pub key: String,
    /// The value before the try; absent when the key had none (a revert removes it again).
    /// `"REDACTED"` for a secret setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    /// The value the try gave it; `"REDACTED"` for a secret setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// True when the setting is secret (`models::secret`): both values are replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A pending try: what it changed, until when, and who asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Provisional {
    /// The transaction the change was staged in.
    pub transaction: String,
    /// The keys the try changed, sorted.
    pub changes: Vec<ProvisionalChange>,
    /// RFC 3339 UTC time the try started.
    pub started: String,
    /// RFC 3339 UTC time at which, unconfirmed, it is reverted.
    pub deadline: String,
    /// The timeout the try was started with, in seconds.
    pub timeout_seconds: u64,
    /// Seconds left before the revert, rounded up (0 once the deadline has passed and the
    /// revert is under way).
    pub remaining_seconds: u64,
    /// Who started the try (the socket's peer credentials), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_read_with_their_unit() {
        assert_eq!(parse_timeout("120"), Ok(120));
        assert_eq!(parse_timeout("120s"), Ok(120));
        assert_eq!(parse_timeout("2m"), Ok(120));
        assert_eq!(parse_timeout("1h"), Ok(3600));
        assert_eq!(parse_timeout("24h"), Ok(MAX_TIMEOUT_SECS));
    }

    #[test]
    fn hostile_timeouts_are_refused_with_a_reason() {
        for (text, says) in [
            ("0s", "too short"),
            ("0", "too short"),
            ("abc", "unit"),
            ("", "not a duration"),
            ("s", "not a duration"),
            ("-5s", "not a duration"),
            ("1.5m", "not a duration"),
            ("25h", "longer than"),
            ("999999999h", "longer than"),
            ("99999999999999999999", "not a duration"),
            ("5d", "unit"),
            ("5 s", "not a duration"),
            ("007s", "leading zeros"),
        ] {
            let error = parse_timeout(text).expect_err(text);
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_pattern_admits_what_the_parser_reads() {
        let pattern = timeout_pattern();
        assert!(pattern.starts_with('^') && pattern.ends_with('$'));
    }

    #[test]
    fn absent_values_are_left_out() {
        let change = ProvisionalChange {
            key: "settings.motd".into(),
            old: None,
            new: Some(Value::from("hi")),
            redacted: false,
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(text, r#"{"key":"settings.motd","new":"hi"}"#);
        assert_eq!(
            serde_json::from_str::<ProvisionalChange>(&text).unwrap(),
            change
        );
    }
}

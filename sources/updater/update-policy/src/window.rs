//! Maintenance windows: whether one is open at an instant, and when the next one opens.
//!
//! A window opens at `start` local time (in its `time-zone`, UTC when absent) on each of its
//! `days` (every day when absent or empty) and stays open for `length`, so it may run past
//! midnight into the next day: a window on `sat` from 23:00 for 2h is open on Sunday at 00:30.
//! The day named is the day the window opens.
//!
//! Clock changes follow RFC 5545 (jiff's "compatible" rule): a start inside a gap (02:30 on a
//! spring-forward night) is moved forward by the gap (03:30 new time); a start inside a fold
//! (01:30 on a fall-back night) opens at the first of the two. The length is elapsed time, so a
//! 2h window always lasts two real hours.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use models::MaintenanceWindow;
use std::collections::BTreeMap;

/// Where the node stands with respect to its windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    /// No window is configured: reboots may happen at any time.
    Always,
    /// A window is open until the given time.
    Open { until: Timestamp },
    /// Every window is closed; the next one opens then (None: never, e.g. no days).
    Closed { next: Option<Timestamp> },
}

/// A window whose settings cannot be used; names the window and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    pub name: String,
    pub reason: String,
}

impl std::fmt::Display for WindowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "maintenance window '{}' cannot be used: {}",
            self.name, self.reason
        )
    }
}

/// The windows' state at `now`. A window that cannot be used (unknown time zone, no start or
/// length) is an error, so that the caller refuses to reboot rather than guess.
pub fn state<K: AsRef<str>>(
    windows: Option<&BTreeMap<K, MaintenanceWindow>>,
    now: Timestamp,
) -> Result<WindowState, WindowError> {
    let Some(windows) = windows.filter(|w| !w.is_empty()) else {
        return Ok(WindowState::Always);
    };
    let mut open_until: Option<Timestamp> = None;
    let mut next: Option<Timestamp> = None;
    for (name, window) in windows {
        let spec = Spec::from_settings(name.as_ref(), window)?;
        for (start, end) in spec.occurrences_around(now) {
            if start <= now && now < end {
                open_until = Some(open_until.map_or(end, |u| u.max(end)));
            }
            if start > now {
                next = Some(next.map_or(start, |n| n.min(start)));
            }
        }
    }
    Ok(match open_until {
        Some(until) => WindowState::Open { until },
        None => WindowState::Closed { next },
    })
}

/// One window in the form the arithmetic needs.
struct Spec {
    zone: TimeZone,
    /// Days since Monday on which it opens; empty means every day.
    days: Vec<u8>,
    start: Time,
    length: SignedDuration,
}

impl Spec {
    fn from_settings(name: &str, window: &MaintenanceWindow) -> Result<Spec, WindowError> {
        let error = |reason: String| WindowError {
            name: name.to_string(),
            reason,
        };
        let zone = match &window.time_zone {
            None => TimeZone::UTC,
            Some(zone) => jiff::tz::db()
                .get(zone.as_str())
                .map_err(|e| error(format!("time zone '{zone}' is not known ({e})")))?,
        };
        let (hour, minute) = window
            .start
            .as_ref()
            .ok_or_else(|| error("it has no start; set start = \"HH:MM\"".to_string()))?
            .hour_minute();
        let start = Time::new(i8_of(hour), i8_of(minute), 0, 0)
            .map_err(|e| error(format!("start {hour:02}:{minute:02}: {e}")))?;
        let seconds = window
            .length
            .as_ref()
            .ok_or_else(|| error("it has no length; set length such as \"2h\"".to_string()))?
            .seconds();
        let length = SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX));
        let days = window
            .days
            .iter()
            .flatten()
            .map(|d| d.days_from_monday())
            .collect();
        Ok(Spec {
            zone,
            days,
            start,
            length,
        })
    }

    /// Every opening of this window that could contain `now`, and those of the next eight days:
    /// (open, close) pairs.
    fn occurrences_around(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = now.to_zoned(self.zone.clone()).date();
        // A window opened on an earlier day may still be open: look back as many days as it
        // lasts, plus one.
        let back = (self.length.as_secs() / 86_400).saturating_add(1).min(400);
        let mut out = Vec::new();
        for offset in -back..=8 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            if !self.opens_on(date) {
                continue;
            }
            let Ok(open) = date.to_datetime(self.start).to_zoned(self.zone.clone()) else {
                continue;
            };
            let open = open.timestamp();
            let Ok(close) = open.checked_add(self.length) else {
                continue;
            };
            out.push((open, close));
        }
        out
    }

    fn opens_on(&self, date: Date) -> bool {
        let weekday = u8::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        self.days.is_empty() || self.days.contains(&weekday)
    }
}

fn i8_of(value: u8) -> i8 {
    i8::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn windows(value: serde_json::Value) -> BTreeMap<String, MaintenanceWindow> {
        let mut out = BTreeMap::new();
        for (name, w) in value.as_object().unwrap() {
            out.insert(name.clone(), serde_json::from_value(w.clone()).unwrap());
        }
        out
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn state_at(w: &BTreeMap<String, MaintenanceWindow>, now: &str) -> WindowState {
        state(Some(w), at(now)).unwrap()
    }

    #[test]
    fn no_windows_means_always() {
        let none: Option<&BTreeMap<String, MaintenanceWindow>> = None;
        assert_eq!(
            state(none, at("2025-03-01T00:00:00Z")),
            Ok(WindowState::Always)
        );
        assert_eq!(
            state(
                Some(&BTreeMap::<String, _>::new()),
                at("2025-03-01T00:00:00Z")
            ),
            Ok(WindowState::Always)
        );
    }

    #[test]
    fn a_daily_window_opens_and_closes() {
        let w = windows(json!({"n": {"start": "02:00", "length": "1h"}}));
        assert_eq!(
            state_at(&w, "2025-03-05T01:59:59Z"),
            WindowState::Closed {
                next: Some(at("2025-03-05T02:00:00Z"))
            }
        );
        assert_eq!(
            state_at(&w, "2025-03-05T02:00:00Z"),
            WindowState::Open {
                until: at("2025-03-05T03:00:00Z")
            }
        );
        // The close is exclusive; the next opening is tomorrow.
        assert_eq!(
            state_at(&w, "2025-03-05T03:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-06T02:00:00Z"))
            }
        );
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
        // 2025-03-08 is a Saturday.
        let w = windows(json!({"n": {"days": ["sat"], "start": "23:00", "length": "2h"}}));
        assert_eq!(
            state_at(&w, "2025-03-09T00:30:00Z"),
            WindowState::Open {
                until: at("2025-03-09T01:00:00Z")
            },
            "Sunday 00:30 is inside Saturday's window"
        );
        assert_eq!(
            state_at(&w, "2025-03-09T01:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-15T23:00:00Z"))
            },
            "next Saturday"
        );
        // Friday night is not a window: the day is the opening day.
        assert_eq!(
            state_at(&w, "2025-03-08T00:30:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-08T23:00:00Z"))
            }
        );
    }

    #[test]
    fn days_pick_the_right_weekdays() {
        // 2025-03-03 is a Monday.
        let w = windows(json!({"n": {"days": ["tue", "thu"], "start": "12:00", "length": "30m"}}));
        assert_eq!(
            state_at(&w, "2025-03-03T12:10:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-04T12:00:00Z"))
            }
        );
        assert_eq!(
            state_at(&w, "2025-03-04T12:10:00Z"),
            WindowState::Open {
                until: at("2025-03-04T12:30:00Z")
            }
        );
        assert_eq!(
            state_at(&w, "2025-03-04T12:30:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-06T12:00:00Z"))
            }
        );
        let never = windows(json!({"n": {"days": [], "start": "12:00", "length": "30m"}}));
        assert!(
            matches!(
                state_at(&never, "2025-03-04T12:10:00Z"),
                WindowState::Open { .. }
            ),
            "empty days = every day"
        );
    }

    #[test]
    fn time_zones_shift_the_window() {
        // 02:00 in New York in winter (UTC-5) is 07:00 UTC.
        let w = windows(
            json!({"n": {"start": "02:00", "length": "1h", "time-zone": "America/New_York"}}),
        );
        assert_eq!(
            state_at(&w, "2025-01-15T07:30:00Z"),
            WindowState::Open {
                until: at("2025-01-15T08:00:00Z")
            }
        );
        // In summer (UTC-4) it is 06:00 UTC.
        assert_eq!(
            state_at(&w, "2025-07-15T06:30:00Z"),
            WindowState::Open {
                until: at("2025-07-15T07:00:00Z")
            }
        );
        // Weekdays are the zone's: Monday 01:00 in Tokyo is still Sunday in UTC.
        let tokyo = windows(
            json!({"n": {"days": ["mon"], "start": "01:00", "length": "1h", "time-zone": "Asia/Tokyo"}}),
        );
        assert_eq!(
            state_at(&tokyo, "2025-03-02T16:30:00Z"),
            WindowState::Open {
                until: at("2025-03-02T17:00:00Z")
            }
        );
    }

    #[test]
    fn clock_changes() {
        // US spring forward: 2025-03-09 02:30 local does not exist in New York; the window
        // opens an hour later, at 03:30 EDT (07:30 UTC), and still lasts its full hour.
        let w = windows(
            json!({"n": {"start": "02:30", "length": "1h", "time-zone": "America/New_York"}}),
        );
        assert_eq!(
            state_at(&w, "2025-03-09T07:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-09T07:30:00Z"))
            }
        );
        assert_eq!(
            state_at(&w, "2025-03-09T08:00:00Z"),
            WindowState::Open {
                until: at("2025-03-09T08:30:00Z")
            }
        );
        // The day before, 02:30 EST is 07:30 UTC too, and the day after, 02:30 EDT is 06:30 UTC.
        assert_eq!(
            state_at(&w, "2025-03-10T06:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-10T06:30:00Z"))
            }
        );
        // Fall back: 2025-11-02 01:30 happens twice; the window opens at the first (EDT,
        // 05:30 UTC), and lasts one real hour.
        let w = windows(
            json!({"n": {"start": "01:30", "length": "1h", "time-zone": "America/New_York"}}),
        );
        assert_eq!(
            state_at(&w, "2025-11-02T05:45:00Z"),
            WindowState::Open {
                until: at("2025-11-02T06:30:00Z")
            }
        );
        assert_eq!(
            state_at(&w, "2025-11-02T06:30:00Z"),
            WindowState::Closed {
                next: Some(at("2025-11-03T06:30:00Z"))
            },
            "the next day's 01:30 is EST"
        );
    }

    #[test]
    fn overlapping_windows_join_and_the_earliest_next_wins() {
        let w = windows(json!({
            "a": {"start": "01:00", "length": "2h"},
            "b": {"start": "02:00", "length": "2h"},
            "c": {"days": ["sun"], "start": "00:30", "length": "10m"}
        }));
        assert_eq!(
            state_at(&w, "2025-03-05T02:30:00Z"),
            WindowState::Open {
                until: at("2025-03-05T04:00:00Z")
            }
        );
        assert_eq!(
            state_at(&w, "2025-03-05T05:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-06T01:00:00Z"))
            }
        );
        // Saturday 2025-03-08 evening: Sunday 00:30 comes before 01:00.
        assert_eq!(
            state_at(&w, "2025-03-08T23:00:00Z"),
            WindowState::Closed {
                next: Some(at("2025-03-09T00:30:00Z"))
            }
        );
    }

    #[test]
    fn a_long_window_is_found_from_days_later() {
        let w = windows(json!({"n": {"days": ["mon"], "start": "00:00", "length": "3d"}}));
        // Wednesday 2025-03-05 noon is inside Monday's three days.
        assert_eq!(
            state_at(&w, "2025-03-05T12:00:00Z"),
            WindowState::Open {
                until: at("2025-03-06T00:00:00Z")
            }
        );
    }

    #[test]
    fn unusable_windows_are_errors_naming_them() {
        let w = windows(
            json!({"bad": {"start": "02:00", "length": "1h", "time-zone": "Mars/Olympus"}}),
        );
        let err = state(Some(&w), at("2025-03-05T02:30:00Z")).unwrap_err();
        assert_eq!(err.name, "bad");
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
        let w = windows(json!({"nostart": {"length": "1h"}}));
        assert!(state(Some(&w), at("2025-03-05T02:30:00Z"))
            .unwrap_err()
            .reason
            .contains("no start"));
        let w = windows(json!({"nolength": {"start": "01:00"}}));
        assert!(state(Some(&w), at("2025-03-05T02:30:00Z"))
            .unwrap_err()
            .reason
            .contains("no length"));
    }
}

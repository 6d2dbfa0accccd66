//! Times and durations: expirations and wave start times are spans ("2 weeks", "1 day", "6h")
//! added to a point in time in UTC. The arithmetic lives in `update-metadata`, shared with the
//! wave schedules there.

pub use update_metadata::time::add_span;

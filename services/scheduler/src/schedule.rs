//! Cron expressions (5 fields, or 6 with seconds first; UTC): shared with
//! policy cadences.

pub use regsweep_policy::cron::{MAX_SCHEDULE_CHARS, next_after, parse};

//! The SQLite forms of the shared rows (times as integer microseconds).

use crate::store::rows;

pub use crate::store::rows::{JOB_COLUMNS, claimed, to_i32};

pub type JobRow = rows::JobRow<i64>;

/// Statuses in which a job holds its unique key (the partial unique index).
pub const ACTIVE: &str = crate::store::sets::active!();
/// Statuses a worker can claim from.
pub const CLAIMABLE: &str = crate::store::sets::claimable!();

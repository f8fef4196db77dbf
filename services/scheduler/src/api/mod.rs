//! The scheduler's gRPC services.

mod crons;
mod jobs;
mod tail;
mod validate;
mod workers;

pub use crons::CronApi;
pub use jobs::JobApi;
pub use workers::WorkerApi;

//! The scheduler's gRPC services.

mod jobs;
mod validate;
mod workers;

pub use jobs::JobApi;
pub use workers::WorkerApi;

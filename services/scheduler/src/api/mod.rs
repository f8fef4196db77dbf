//! The scheduler's gRPC services.

mod crons;
mod etag;
mod jobs;
mod mask;
mod plans;
mod policies;
mod preview;
mod protection;
mod registries;
mod repositories;
mod sightings;
mod tail;
mod validate;
mod workers;

pub use crons::CronApi;
pub use jobs::JobApi;
pub use policies::PolicyApi;
pub use registries::RegistryApi;
pub use repositories::RepositoryApi;
pub use workers::WorkerApi;

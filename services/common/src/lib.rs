//! What every regsweep service shares: telemetry set-up, the shutdown
//! signal, the gRPC server (health, reflection, limits), field-violation
//! errors, the store error, durations and page tokens.

pub mod address;
pub mod auth;
pub mod backoff;
pub mod clock;
pub mod db;
pub mod duration;
pub mod grpc;
pub mod paging;
pub mod prometheus;
pub mod shutdown;
mod store_error;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod units;
pub mod violations;

pub use shutdown::Shutdown;
pub use store_error::StoreError;
pub use supervisor::{Supervisor, TaskFailure};
pub use violations::FieldViolations;

//! Harness for regsweep's integration tests: a fresh PostgreSQL database
//! per test, the real service binaries on free ports, and waits on events
//! (log lines, job states) instead of sleeps.
//!
//! Nothing here is mocked. A missing dependency (PostgreSQL down, binaries
//! not built) fails the test with a message saying what to do.

pub mod authproxy;
pub mod browser;
pub mod db;
pub mod graphgen;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod raw;
pub mod registry;
pub mod selection;
pub mod services;
pub mod tcpproxy;
pub mod wait;

pub use db::TestDb;
pub use process::Service;
pub use raw::RawWorker;
pub use registry::TestRegistry;
pub use services::{Console, Dev, Scheduler, Scrubber, Worker};
pub use wait::wait_until;

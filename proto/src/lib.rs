//! regsweep's gRPC protocol: the types, clients and servers generated from
//! `proto/regsweep/v1`, the descriptor set for server reflection, and the
//! few conversions every crate needs (JSON <-> `Struct`, time <-> `Timestamp`).

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/regsweep.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/regsweep.v1.serde.rs"));
}

mod convert;

pub use convert::{
    duration_from_std, duration_to_std, json_to_struct, struct_to_json, timestamp_from_chrono,
    timestamp_to_chrono,
};
pub use pbjson_types;

/// Encoded `FileDescriptorSet` of every regsweep proto and its imports, for
/// `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/regsweep_descriptor.bin"));

impl v1::JobStatus {
    /// The lower-case name used in tables, logs and storage: `waiting`,
    /// `worker_dead`, ... (`unspecified` for the zero value).
    pub fn short_name(self) -> &'static str {
        use v1::JobStatus as S;
        match self {
            S::Unspecified => "unspecified",
            S::Waiting => "waiting",
            S::Running => "running",
            S::Done => "done",
            S::Error => "error",
            S::CancelRequest => "cancel_request",
            S::Cancel => "cancel",
            S::Deleted => "deleted",
            S::WorkerDead => "worker_dead",
            S::WorkerShutdown => "worker_shutdown",
            S::WorkerResurrection => "worker_resurrection",
        }
    }

    /// Parses a short name (`done`) or the full enum name (`JOB_STATUS_DONE`).
    pub fn from_short_name(name: &str) -> Option<Self> {
        Self::from_str_name(name)
            .or_else(|| Self::from_str_name(&format!("JOB_STATUS_{}", name.to_ascii_uppercase())))
    }

    /// Whether the job can change no more (except by deletion or purge).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Error | Self::Cancel | Self::Deleted)
    }
}

impl v1::WorkerStatus {
    /// The lower-case name used in tables and storage: `alive`, `draining`, ...
    pub fn short_name(self) -> &'static str {
        use v1::WorkerStatus as S;
        match self {
            S::Unspecified => "unspecified",
            S::Alive => "alive",
            S::Draining => "draining",
            S::Dead => "dead",
            S::Offline => "offline",
        }
    }

    /// Parses a short name (`alive`) or the full enum name.
    pub fn from_short_name(name: &str) -> Option<Self> {
        Self::from_str_name(name).or_else(|| {
            Self::from_str_name(&format!("WORKER_STATUS_{}", name.to_ascii_uppercase()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{JobStatus, WorkerStatus};

    #[test]
    fn job_status_short_names_round_trip() {
        for n in 0..=10 {
            let status = JobStatus::try_from(n).expect("valid status number");
            assert_eq!(JobStatus::from_short_name(status.short_name()), Some(status));
            assert_eq!(JobStatus::from_short_name(status.as_str_name()), Some(status));
        }
        assert_eq!(JobStatus::from_short_name("nope"), None);
    }

    #[test]
    fn worker_status_short_names_round_trip() {
        for n in 0..=4 {
            let status = WorkerStatus::try_from(n).expect("valid status number");
            assert_eq!(WorkerStatus::from_short_name(status.short_name()), Some(status));
        }
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = (0..=10)
            .map(|n| JobStatus::try_from(n).expect("valid"))
            .filter(|s| s.is_terminal())
            .map(|s| s.short_name())
            .collect();
        assert_eq!(terminal, ["done", "error", "cancel", "deleted"]);
    }
}

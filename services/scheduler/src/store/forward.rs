//! One macro for the store trait impls that only pass calls on: each store
//! maps an operation to the function that implements it, and the metrics
//! decorator wraps each operation in a timer. Written by hand, the three
//! layers were ~860 lines of signatures repeated around one-line bodies;
//! here each operation is one line per layer, and the compiler still checks
//! every line against the trait.
//!
//! The macro writes the whole `impl` block, attribute included, because
//! `#[async_trait]` rewrites the `async fn`s it sees: an `async fn` expanded
//! from a macro inside an already-rewritten block would not match the trait.

/// Writes `impl $trait for $type` where each listed operation forwards.
///
/// * `via |s| expr`: each operation calls `path(expr, args...)`, with `s`
///   bound to `&self` (a store's own functions take its pool or the store).
/// * `timed`: each operation calls the wrapped store's method of the same
///   name inside `regsweep_common::prometheus::timed`, labelled with its
///   name (the metrics decorator); the store function named is unused.
///
/// Operations whose body is more than a call go in a trailing `{ ... }`,
/// written out as ordinary trait items.
macro_rules! store_impl {
    (
        impl $trait:ident for $type:ty, via |$s:ident| $via:expr;
        $( fn $name:ident($($arg:ident: $argty:ty),* $(,)?) -> $ret:ty => $target:path; )*
        $({ $($extra:tt)* })?
    ) => {
        #[async_trait::async_trait]
        impl $trait for $type {
            $(
                async fn $name(&self, $($arg: $argty),*) -> Result<$ret, StoreError> {
                    let $s = self;
                    $target($via, $($arg),*).await
                }
            )*
            $($($extra)*)?
        }
    };
    (
        impl $trait:ident for $type:ty, timed;
        $( fn $name:ident($($arg:ident: $argty:ty),* $(,)?) -> $ret:ty => $target:path; )*
        $({ $($extra:tt)* })?
    ) => {
        #[async_trait::async_trait]
        impl $trait for $type {
            $(
                async fn $name(&self, $($arg: $argty),*) -> Result<$ret, StoreError> {
                    regsweep_common::prometheus::timed(stringify!($name), self.0.$name($($arg),*))
                        .await
                }
            )*
            $($($extra)*)?
        }
    };
}

pub(crate) use store_impl;

/// Expands `$callback! { $head ... }` with every [`JobStore`] operation,
/// each naming the module function that implements it in both stores
/// (their modules have the same names for this), then `$extra` (a block
/// of operations written out).
///
/// [`JobStore`]: super::JobStore
macro_rules! job_store_ops {
    ($callback:ident! { $($head:tt)* } $($extra:tt)*) => {
        $callback! {
            $($head)*
            fn create_job(job: NewJob) -> CreateOutcome => jobs::create;
            fn create_jobs(batch: Vec<NewJob>) -> Vec<CreateOutcome> => jobs::create_many;
            fn get_job(id: i64) -> Option<JobRecord> => jobs::get;
            fn list_jobs(filter: &JobFilter, before: Option<i64>, limit: u32) -> Vec<JobRecord>
                => jobs::list;
            fn cancel_job(id: i64, reason: &str) -> CancelOutcome => jobs::cancel;
            fn delete_job(id: i64) -> DeleteOutcome => jobs::delete;
            fn job_logs(id: i64, attempt: Option<u32>, cursor: Option<LogCursor>, limit: u32)
                -> Option<(Vec<LogLine>, LogCursor)> => jobs::logs;
            fn register_worker(hello: &WorkerHello, ttl: Duration) -> Registration
                => workers::register;
            fn set_draining(session: SessionRef) -> bool => workers::set_draining;
            fn list_workers(include_gone: bool, offset: u64, limit: u32) -> Vec<WorkerRecord>
                => workers::list;
            fn claim(kind: &str, slots: &[ClaimSlot], token: Uuid) -> Vec<JobRecord>
                => queue::claim;
            fn claimed(token: Uuid, workers: &[Uuid]) -> Vec<JobRecord> => queue::claimed;
            fn write_batch(batch: &WriteBatch, ttl: Duration) -> WriteOutcome => queue::write_batch;
            fn try_lease(name: &str, holder: Uuid, lease: Duration) -> bool => leases::try_lease;
            fn release_lease(name: &str, holder: Uuid) -> () => leases::release_lease;
            fn reap_expired_workers(fence: Fence) -> Reaped => workers::reap;
            fn set_worker_capacity(worker_id: Uuid, capacity: &HashMap<String, u32>)
                -> CapacityOutcome => workers::set_capacity;
            fn create_cron(cron: NewCron) -> Option<CronRecord> => crons::create;
            fn get_cron(name: &str) -> Option<CronRecord> => crons::get;
            fn list_crons() -> Vec<CronRecord> => crons::list;
            fn update_cron(cron: NewCron) -> Option<CronRecord> => crons::update;
            fn delete_cron(name: &str) -> bool => crons::delete;
            fn fire_due_crons(next: NextFire, fence: Fence) -> Vec<Fired> => crons::fire_due;
            fn next_cron_due() -> Option<DateTime<Utc>> => crons::next_due;
            fn purge_jobs(older_than: Duration, keep_last: u64) -> Purged => retention::purge;
            fn queue_stats() -> QueueStats => stats::queue;
            $($extra)*
        }
    };
}

pub(crate) use job_store_ops;

/// [`job_store_ops!`] for [`CatalogStore`].
///
/// [`CatalogStore`]: super::catalog::CatalogStore
macro_rules! catalog_store_ops {
    ($callback:ident! { $($head:tt)* } $($extra:tt)*) => {
        $callback! {
            $($head)*
            fn create_registry(r: NewRegistry) -> Option<RegistryRecord>
                => registries::create_registry;
            fn get_registry(name: &str) -> Option<RegistryRecord> => registries::get_registry;
            fn list_registries() -> Vec<RegistryRecord> => registries::list_registries;
            fn set_registry_capabilities(id: i64, capabilities: &str) -> ()
                => registries::set_registry_capabilities;
            fn record_pushback(name: &str, pushback: &str) -> bool => registries::record_pushback;
            fn update_registry(r: NewRegistry) -> Option<RegistryRecord>
                => registries::update_registry;
            fn delete_registry(name: &str) -> DeleteRegistryOutcome => registries::delete_registry;
            fn create_policy(p: NewPolicy) -> Option<PolicyRecord> => registries::create_policy;
            fn get_policy(name: &str, counted: Counted) -> Option<PolicyRecord>
                => registries::get_policy;
            fn list_policies(registry_id: Option<i64>, counted: Counted) -> Vec<PolicyRecord>
                => registries::list_policies;
            fn update_policy(p: NewPolicy) -> Option<PolicyRecord> => registries::update_policy;
            fn delete_policy(name: &str) -> bool => registries::delete_policy;
            fn run_policy(name: &str) -> Option<PolicyRecord> => registries::run_policy;
            fn reassign_repositories(registry_id: i64, matcher: &PolicyMatcher) -> u64
                => repositories::reassign;
            fn report_repositories(
                job_id: i64, attempt: u32, registry_id: i64, names: &[String], complete: bool,
                matcher: &PolicyMatcher,
            ) -> ReportOutcome => repositories::report;
            fn record_deletions(job_id: i64, deleted_tags: u32) -> bool
                => repositories::record_deletions;
            fn record_sightings(batch: SightingBatch<'_>) -> Vec<DateTime<Utc>>
                => repositories::record_sightings;
            fn mark_in_use(marks: InUseMarks<'_>) -> MarkOutcome => in_use::mark;
            fn live_marks(registry_id: i64, repository: &str, now: DateTime<Utc>, limit: u32)
                -> Vec<LiveMark> => in_use::live;
            fn list_repositories(filter: &RepositoryFilter, after: Option<i64>, limit: u32)
                -> Vec<RepositoryRecord> => repositories::list;
            fn select_cleanups(config: &SelectionConfig, advance: AdvanceRun, fence: Fence)
                -> Selection => selection::select;
            fn cleanup_stats() -> CleanupStats => stats::cleanups;
            $($extra)*
        }
    };
}

pub(crate) use catalog_store_ops;

//! The sets of statuses the stores' statements test, each written once.
//! They are macros, not constants, so that statements stay `&'static str`
//! (`concat!("... status IN ", sets::on_worker!(), " ...")`), and the tests
//! below check each against the enums, so a set cannot drift from the
//! states it names. A decision that must stay inside one statement (a
//! claim, a fenced update) takes its statuses from here.

/// Jobs waiting for a worker: new, or given back by a dead or stopping one.
macro_rules! claimable {
    () => {
        "('waiting', 'worker_dead', 'worker_shutdown')"
    };
}

/// Jobs a worker holds: running, or asked to stop.
macro_rules! on_worker {
    () => {
        "('running', 'cancel_request')"
    };
}

/// Jobs a worker holds, or held when it was declared dead and may still
/// run until it acknowledges the cancel.
macro_rules! on_worker_or_resurrecting {
    () => {
        "('running', 'cancel_request', 'worker_resurrection')"
    };
}

/// Jobs that can change no more (`JobStatus::is_terminal`).
macro_rules! finished {
    () => {
        "('done', 'error', 'cancel', 'deleted')"
    };
}

/// Jobs not finished: the ones a unique key is held by.
macro_rules! active {
    () => {
        "('waiting', 'running', 'cancel_request', 'worker_dead', 'worker_shutdown', \
         'worker_resurrection')"
    };
}

/// What a worker's last update ends an attempt's job with, for good.
macro_rules! ended_by_worker {
    () => {
        "('done', 'error', 'cancel')"
    };
}

/// Workers that hold a session: they heartbeat and may run jobs.
macro_rules! live_worker {
    () => {
        "('alive', 'draining')"
    };
}

/// Repositories whose cleanup is due and waits for a slot.
macro_rules! cleanup_waiting {
    () => {
        "('scheduled', 'unfinished')"
    };
}

/// Repositories whose cleanup of this cycle has not ended.
macro_rules! cleanup_in_cycle {
    () => {
        "('ongoing', 'unfinished')"
    };
}

pub(crate) use {
    active, claimable, cleanup_in_cycle, cleanup_waiting, ended_by_worker, finished, live_worker,
    on_worker, on_worker_or_resurrecting,
};

#[cfg(test)]
mod tests {
    use regsweep_proto::v1::{CleanupStatus, JobStatus, WorkerStatus};

    /// `('a', 'b')`, as the sets are written.
    fn sql<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
        let quoted: Vec<String> = names.into_iter().map(|n| format!("'{n}'")).collect();
        format!("({})", quoted.join(", "))
    }

    fn jobs(statuses: &[JobStatus]) -> String {
        sql(statuses.iter().map(|s| s.short_name()))
    }

    /// Every job status but the zero value, in enum order.
    fn all_jobs() -> Vec<JobStatus> {
        (1..).map_while(|n| JobStatus::try_from(n).ok()).collect()
    }

    #[test]
    fn job_sets_are_the_states_they_name() {
        use JobStatus::*;
        let terminal: Vec<JobStatus> = all_jobs().into_iter().filter(|s| s.is_terminal()).collect();
        let active: Vec<JobStatus> = all_jobs().into_iter().filter(|s| !s.is_terminal()).collect();
        assert_eq!(finished!(), jobs(&terminal));
        assert_eq!(active!(), jobs(&active));
        assert_eq!(claimable!(), jobs(&[Waiting, WorkerDead, WorkerShutdown]));
        assert_eq!(on_worker!(), jobs(&[Running, CancelRequest]));
        assert_eq!(
            on_worker_or_resurrecting!(),
            jobs(&[Running, CancelRequest, WorkerResurrection])
        );
        assert_eq!(ended_by_worker!(), jobs(&[Done, Error, Cancel]));
        // Every unfinished job is waiting for a worker, held by one, or
        // held back from one: the sets cover the states between them.
        let mut covered = [Waiting, WorkerDead, WorkerShutdown, Running, CancelRequest]
            .into_iter()
            .chain([WorkerResurrection])
            .collect::<Vec<_>>();
        covered.sort_by_key(|s| *s as i32);
        assert_eq!(covered, active);
    }

    /// Every status list the migrations test outside a CHECK (partial
    /// indexes, trigger conditions) is one of the sets, so a statement's
    /// predicate and the index it needs cannot drift apart.
    #[test]
    fn the_migrations_index_and_trigger_on_the_same_sets() {
        let sets = [
            claimable!(),
            on_worker!(),
            on_worker_or_resurrecting!(),
            finished!(),
            active!(),
            ended_by_worker!(),
            live_worker!(),
            cleanup_waiting!(),
            cleanup_in_cycle!(),
        ];
        let mut checked = 0;
        for dialect in ["postgres", "sqlite"] {
            let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
            for entry in std::fs::read_dir(&dir).expect("migrations") {
                let path = entry.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("migration");
                for (at, _) in text.match_indices("status IN (") {
                    // The column's name (`cleanup_status`, `NEW.status`)
                    // and what precedes it.
                    let before = text[..at]
                        .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || "_.".contains(c));
                    if before.trim_end().ends_with("CHECK (") {
                        continue;
                    }
                    let list = &text[at + "status IN ".len()..];
                    let list = &list[..=list.find(')').expect("a closed list")];
                    let list = list.split_whitespace().collect::<Vec<_>>().join(" ");
                    assert!(sets.contains(&list.as_str()), "{}: {list}", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked >= 10, "{checked} lists checked");
    }

    #[test]
    fn worker_and_cleanup_sets_are_the_states_they_name() {
        let workers = [WorkerStatus::Alive, WorkerStatus::Draining];
        assert_eq!(live_worker!(), sql(workers.iter().map(|s| s.short_name())));
        let cleanup = |statuses: &[CleanupStatus]| {
            let names: Vec<String> = statuses
                .iter()
                .map(|s| s.as_str_name().trim_start_matches("CLEANUP_STATUS_").to_lowercase())
                .collect();
            sql(names.iter().map(String::as_str))
        };
        assert_eq!(
            cleanup_waiting!(),
            cleanup(&[CleanupStatus::Scheduled, CleanupStatus::Unfinished])
        );
        assert_eq!(
            cleanup_in_cycle!(),
            cleanup(&[CleanupStatus::Ongoing, CleanupStatus::Unfinished])
        );
    }
}

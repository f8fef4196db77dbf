//! What each caller may do, as the services answered, remembered briefly.
//! A page offering an admin action asks the service that would carry it
//! out (`backend::may`); without this memory every page view cost that
//! call. An answer is kept for [`TTL`] per token and action, so a role
//! changed meanwhile shows on the buttons that much later; the services
//! still judge every real request. Only definite answers are kept
//! (allowed, or not allowed): an unreachable or failing service, or a
//! token the service no longer knows, is asked again next time.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use crate::backend::{May, may};
use crate::session::Caller;

/// How long an answer stands.
pub const TTL: Duration = Duration::from_secs(30);
/// Answers kept at most; past it, expired ones go, then all.
const MAX_ANSWERS: usize = 10_000;

/// An admin action a page offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    CancelJob,
    EditPolicy,
    SetCapacity,
    RestoreDeletions,
    ApproveDeletions,
}

#[derive(Default)]
pub struct Permissions {
    /// Tokens are kept as keyed hashes (per process), never as text.
    hasher: RandomState,
    answers: Mutex<HashMap<(u64, Action), (May, Instant)>>,
}

impl Permissions {
    /// Whether `caller` may take `action`: the answer kept, or `probe`'s.
    pub async fn may(
        &self,
        caller: &Caller,
        action: Action,
        probe: impl Future<Output = Result<(), tonic::Status>>,
    ) -> May {
        let key = (self.hasher.hash_one(caller.token()), action);
        if let Some(answer) = self.kept(&key) {
            return answer;
        }
        let answer = probe.await;
        // Past the access check (refused as a request) or stopped by it.
        let definite = match &answer {
            Ok(()) => true,
            Err(s) => matches!(
                s.code(),
                Code::PermissionDenied
                    | Code::InvalidArgument
                    | Code::NotFound
                    | Code::FailedPrecondition
            ),
        };
        let answer = may(answer);
        if definite {
            self.keep(key, answer.clone());
        }
        answer
    }

    fn kept(&self, key: &(u64, Action)) -> Option<May> {
        let answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (answer, at) = answers.get(key)?;
        (at.elapsed() < TTL).then(|| answer.clone())
    }

    fn keep(&self, key: (u64, Action), answer: May) {
        let mut answers = self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if answers.len() >= MAX_ANSWERS {
            answers.retain(|_, (_, at)| at.elapsed() < TTL);
            if answers.len() >= MAX_ANSWERS {
                answers.clear();
            }
        }
        answers.insert(key, (answer, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn ask(p: &Permissions, caller: &Caller, calls: &AtomicU32, answer: Code) -> May {
        p.may(caller, Action::CancelJob, async {
            calls.fetch_add(1, Ordering::SeqCst);
            match answer {
                Code::Ok => Ok(()),
                code => Err(tonic::Status::new(code, "no")),
            }
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_kept_per_token_for_a_while_and_outages_never() {
        let p = Permissions::default();
        let anonymous = Caller::anonymous();
        let (admin, reader) = (anonymous.with_token("admin"), anonymous.with_token("reader"));
        let calls = AtomicU32::new(0);
        assert_eq!(ask(&p, &admin, &calls, Code::Ok).await, Ok(()));
        assert_eq!(ask(&p, &admin, &calls, Code::PermissionDenied).await, Ok(()), "kept");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let denied = ask(&p, &reader, &calls, Code::PermissionDenied).await;
        assert_eq!(denied, Err("your token may only read".into()), "another token asks");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        tokio::time::advance(TTL).await;
        assert!(ask(&p, &admin, &calls, Code::PermissionDenied).await.is_err(), "asked again");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        for expected_calls in [4, 5] {
            assert!(ask(&p, &anonymous, &calls, Code::Unavailable).await.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), expected_calls, "an outage is not kept");
        }
    }
}

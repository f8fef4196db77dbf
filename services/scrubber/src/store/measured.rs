//! A store decorator that records every operation's duration in
//! `regsweep_db_operation_seconds{operation}`; installed only when metrics
//! are served.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regsweep_common::prometheus::timed;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::{
    Answer, DeletionFilter, DeletionRecord, DeletionStore, Finish, HourCount, RequestRecord,
    SentRequest, StoreError, Submission,
};

pub struct MeasuredDeletions(pub Arc<dyn DeletionStore>);

#[async_trait]
impl DeletionStore for MeasuredDeletions {
    async fn submit(&self, plan: &Submission<'_>) -> Result<Vec<DeletionRecord>, StoreError> {
        timed("submit_deletions", self.0.submit(plan)).await
    }
    async fn list(
        &self,
        filter: &DeletionFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        timed("list_deletions", self.0.list(filter, before, limit)).await
    }
    async fn restore(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        timed("restore_deletions", self.0.restore(ids)).await
    }
    async fn approve(&self, ids: &[i64]) -> Result<Vec<(i64, bool, String)>, StoreError> {
        timed("approve_deletions", self.0.approve(ids)).await
    }
    async fn request_sent(&self, request: &SentRequest<'_>) -> Result<i64, StoreError> {
        timed("request_sent", self.0.request_sent(request)).await
    }
    async fn requests_answered(&self, answers: &[Answer]) -> Result<(), StoreError> {
        timed("requests_answered", self.0.requests_answered(answers)).await
    }
    async fn requests(&self, deletion_ids: &[i64]) -> Result<Vec<RequestRecord>, StoreError> {
        timed("list_requests", self.0.requests(deletion_ids)).await
    }
    async fn prune_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        timed("prune_requests", self.0.prune_requests(before)).await
    }
    async fn take_back_expired(&self) -> Result<u64, StoreError> {
        timed("take_back_expired", self.0.take_back_expired()).await
    }
    async fn claim_due(
        &self,
        holder: Uuid,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DeletionRecord>, StoreError> {
        timed("claim_deletions", self.0.claim_due(holder, lease, limit)).await
    }
    async fn renew(
        &self,
        holder: Uuid,
        ids: &[i64],
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        timed("renew_deletions", self.0.renew(holder, ids, lease)).await
    }
    async fn finish(&self, holder: Uuid, id: i64, finish: &Finish) -> Result<bool, StoreError> {
        timed("finish_deletion", self.0.finish(holder, id, finish)).await
    }
    async fn status(&self) -> Result<(Vec<(String, i64)>, f64), StoreError> {
        timed("deletion_status", self.0.status()).await
    }
    async fn finished_per_hour(&self, since: DateTime<Utc>) -> Result<Vec<HourCount>, StoreError> {
        timed("finished_per_hour", self.0.finished_per_hour(since)).await
    }
    async fn close(&self) {
        self.0.close().await;
    }
}

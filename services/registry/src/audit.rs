//! A hook around every destructive request a client sends (a manifest
//! DELETE or PUT), so that a process can keep a record of each one: written
//! before the request leaves, answered when it returns. A request that
//! cannot be recorded is not sent.

use std::future::Future;
use std::pin::Pin;

use reqwest::Method;

use crate::Error;

/// A destructive request about to leave.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// The URL's path (`/v2/<name>/manifests/<reference>`).
    pub path: &'a str,
}

/// Where destructive requests are recorded.
pub trait Audit: Send + Sync {
    /// Records `request` before it leaves; returns the record's id. An
    /// error withholds the request.
    fn sending<'a>(
        &'a self,
        request: Outgoing<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<i64, Error>> + Send + 'a>>;
    /// The registry's answer to record `id` (0: no answer came).
    fn answered(&self, id: i64, status: u16) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl std::fmt::Debug for dyn Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Audit")
    }
}

/// Whether a request changes the registry: a manifest's DELETE or PUT
/// (blob uploads only add unreferenced data and are not recorded).
pub(crate) fn is_destructive(method: &Method, path: &str) -> bool {
    (method == Method::DELETE || method == Method::PUT) && path.contains("/manifests/")
}

//! The tower layer that enforces [`Access`](super::Access) in front of
//! every service of a server.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::http;
use tonic_types::{ErrorDetails, StatusExt};

use super::limit::Limited;
use super::{ADMIN, Access, Need, READ, Role, need};

#[derive(Clone, Debug)]
pub struct AccessLayer {
    access: Arc<Access>,
}

impl AccessLayer {
    pub fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService { inner, access: self.access.clone() }
    }
}

#[derive(Clone, Debug)]
pub struct AccessService<S> {
    inner: S,
    access: Arc<Access>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AccessService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.access.check(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

impl Access {
    /// Admits or refuses a call: `Unauthenticated` without a valid token,
    /// `PermissionDenied` when its roles do not cover the rpc,
    /// `ResourceExhausted` (with a retry delay) over the caller's rate.
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), Status> {
        let path = request.uri().path();
        let need = need(path);
        let open = need == Need::Open && !self.auth_reflection;
        let caller = if open || !self.requires_identity() {
            None
        } else {
            let (name, granted) = self.identify(request)?;
            if let Need::AnyOf(roles) = need
                && !granted.iter().any(|r| *r == Role::Admin || roles.contains(r))
            {
                tracing::warn!(caller = %name, rpc = path, "permission denied");
                return Err(Status::permission_denied(format!("{name} may not call {path}")));
            }
            Some(name)
        };
        // Only the admin APIs are limited: the calls workers and scrubbers
        // make as part of their jobs (whose whole fleet may share a token)
        // must not fail a cleanup, and probes must always answer.
        let counted = matches!(need, Need::AnyOf(roles) if roles == READ || roles == ADMIN);
        if let (Some(limits), true) = (&self.limits, counted) {
            let key = caller.unwrap_or_else(|| peer(request));
            if let Err(Limited { wait, caller }) = limits.take(key) {
                tracing::warn!(caller = %caller, rpc = path, "rate limit exceeded");
                return Err(Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    format!("over the rate limit of {} requests per second", limits.rate()),
                    ErrorDetails::with_retry_info(Some(wait)),
                ));
            }
        }
        Ok(())
    }
}

impl Access {
    /// The caller's name and roles: from its bearer token, or else from
    /// its client certificate's common name.
    fn identify<B>(&self, request: &http::Request<B>) -> Result<(String, Vec<Role>), Status> {
        if let (Some(token), Some(tokens)) = (bearer(request.headers()), self.tokens()) {
            let entry = tokens
                .find(token)
                .ok_or_else(|| Status::unauthenticated("unknown bearer token"))?;
            return Ok((format!("token {:?}", entry.name), entry.roles.clone()));
        }
        if let Some(name) = certificate_name(request)
            && let Some((_, roles)) = self.cert_roles.iter().find(|(cn, _)| *cn == name)
        {
            return Ok((format!("certificate {name:?}"), roles.clone()));
        }
        Err(Status::unauthenticated(
            "a bearer token (--token) or a client certificate with a role is required",
        ))
    }
}

/// The common name of the verified client certificate, with mutual TLS.
fn certificate_name<B>(request: &http::Request<B>) -> Option<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(name)
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The caller's address, the rate-limit key when there are no tokens.
fn peer<B>(request: &http::Request<B>) -> String {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref)
    });
    tcp.and_then(TcpConnectInfo::remote_addr).map(|a| a.ip().to_string()).unwrap_or_default()
}

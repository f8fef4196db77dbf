//! Serving and dialing gRPC the same way in every service: health and
//! reflection on every server, consistent HTTP/2 keepalives, a span per
//! rpc, and a graceful shutdown with a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::Shutdown;

/// HTTP/2 keepalive ping interval, the same on servers and clients so that
/// neither side's ping rate trips the other's abuse protection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// How long a keepalive ping may go unanswered before the connection is
/// considered dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of serving or dialing.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The reflection service could not be built from the descriptors.
    #[error("cannot build reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed.
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An endpoint URL is malformed.
    #[error("invalid endpoint {url:?}: {reason}")]
    Endpoint {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The `--health-listen` flag of every server.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct HealthArgs {
    /// Also serve `grpc.health.v1` alone, in plaintext and without tokens,
    /// on this address: for probes that cannot speak TLS (Kubernetes'
    /// gRPC probes), when the main port requires it.
    #[arg(long, env = "REGSWEEP_HEALTH_LISTEN")]
    pub health_listen: Option<String>,
}

impl HealthArgs {
    /// Binds the health address, when one is set.
    pub async fn bind(&self) -> Result<Option<TcpListener>, GrpcError> {
        match &self.health_listen {
            Some(addr) => Ok(Some(bind(addr).await?)),
            None => Ok(None),
        }
    }
}

/// Binds a listen address such as `127.0.0.1:0` or `0.0.0.0:7070`.
pub async fn bind(addr: &str) -> Result<TcpListener, GrpcError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GrpcError::Bind { addr: addr.to_string(), source })
}

/// What a service serves, next to health and reflection.
pub struct ServeConfig {
    /// The service's own routes.
    pub routes: Routes,
    /// Fully qualified names of the services in `routes`, reported SERVING
    /// through `grpc.health.v1` until shutdown.
    pub service_names: Vec<&'static str>,
    /// How long in-flight rpcs get to finish after the shutdown signal.
    pub drain_timeout: Duration,
    /// TLS (and mutual TLS) settings; `None` serves plaintext.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Tokens, roles and rate limits ([`crate::auth::Access::open`] for
    /// none).
    pub access: std::sync::Arc<crate::auth::Access>,
    /// A second, plaintext listener serving only `grpc.health.v1`, for
    /// probes that cannot speak TLS or present tokens (Kubernetes' gRPC
    /// probes).
    pub health_listener: Option<TcpListener>,
}

/// Serves `config.routes` plus `grpc.health.v1` and server reflection (v1
/// and v1alpha, for grpcurl 1.8) on `listener` until `shutdown` fires. On
/// shutdown every service turns NOT_SERVING first, the listener closes, and
/// in-flight rpcs get `drain_timeout` before they are dropped.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: Shutdown,
) -> Result<(), GrpcError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let health_probe = health_service.clone();
    for name in &config.service_names {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let routes = with_reflection(config.routes.add_service(health_service))?;

    let signal = {
        let shutdown = shutdown.clone();
        let names = config.service_names.clone();
        async move {
            shutdown.cancelled().await;
            mark_not_serving(&health, &names).await;
        }
    };
    let mut builder = Server::builder();
    match config.tls {
        Some(tls) => builder = builder.tls_config(tls)?,
        None => tracing::warn!(
            "serving plaintext gRPC: anyone who reaches this port can call it; \
             set --tls-cert and --tls-key (and --tls-client-ca for mutual TLS) outside development"
        ),
    }
    // Only once the main server's settings are good, and only while it
    // serves: a probe must not see SERVING from a server that is not.
    let health_stop = shutdown.child();
    let _health = health_stop.trigger_on_drop();
    if let Some(listener) = config.health_listener {
        serve_health(listener, health_probe, health_stop.clone());
    }
    if !config.access.requires_identity() {
        tracing::warn!("no --tokens-file or --cert-role: every caller may call every rpc");
    }
    config.access.reload_on_sighup(shutdown.clone());
    let server = builder
        .layer(crate::auth::AccessLayer::new(config.access))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .trace_fn(rpc_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(no_delay(listener), signal);

    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(config.drain_timeout).await;
    };
    tokio::select! {
        result = server => result.map_err(GrpcError::from),
        () = deadline => {
            tracing::warn!(timeout = ?config.drain_timeout, "rpcs still in flight after the drain timeout, dropping them");
            Ok(())
        }
    }
}

/// Adds reflection, both versions grpcurl may ask for: our services,
/// health, and `google.rpc` details (so grpcurl decodes the field
/// violations in error details).
fn with_reflection(routes: Routes) -> Result<Routes, GrpcError> {
    let sets = [
        regsweep_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    let builder = || {
        sets.iter().fold(tonic_reflection::server::Builder::configure(), |b, set| {
            b.register_encoded_file_descriptor_set(set)
        })
    };
    Ok(routes.add_service(builder().build_v1()?).add_service(builder().build_v1alpha()?))
}

/// Serves health alone, in plaintext, on its own listener until `stop`.
fn serve_health(listener: TcpListener, probe: HealthServer<impl Health>, stop: Shutdown) {
    let addr = local_addr(&listener).map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%addr, "health listening (plaintext, grpc.health.v1 only)");
    let health_only = Server::builder()
        .add_service(probe)
        .serve_with_incoming_shutdown(no_delay(listener), async move { stop.cancelled().await });
    tokio::spawn(async move {
        if let Err(e) = health_only.await {
            tracing::warn!(error = %e, "health listener failed");
        }
    });
}

/// The span of one rpc, a child of the caller's trace when it sent one.
fn rpc_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    // Callers choose the path: only known services name spans, so made-up
    // paths cannot flood the trace backend with names.
    let known = path.starts_with("/regsweep.v1.") || path.starts_with("/grpc.");
    let name = if known { path } else { "rpc unknown" };
    let span = tracing::info_span!("rpc", otel.name = name, otel.kind = "server", method = path);
    crate::trace::set_parent_from_headers(&span, request.headers());
    span
}

async fn mark_not_serving(health: &HealthReporter, names: &[&'static str]) {
    health.set_service_status("", ServingStatus::NotServing).await;
    for name in names {
        health.set_service_status(*name, ServingStatus::NotServing).await;
    }
}

/// The address a listener is bound to, for the start-up log line.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// An endpoint for `url` (`http://host:port`) with the keepalive and
/// timeout settings every regsweep client uses. Dialing is lazy or explicit
/// through [`Endpoint::connect`].
pub fn endpoint(url: &str) -> Result<Endpoint, GrpcError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| GrpcError::Endpoint { url: url.to_string(), reason: e.to_string() })?;
    let endpoint = match endpoint.uri().scheme_str() {
        Some("http") => endpoint,
        Some("https") => endpoint.tls_config(crate::tls::client_config())?,
        _ => {
            return Err(GrpcError::Endpoint {
                url: url.to_string(),
                reason: "expected http://host:port or https://host:port".to_string(),
            });
        }
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true))
}

/// What every regsweep client adds to its requests: the caller's trace
/// context, so the server's span joins the caller's trace, and the
/// process's bearer token when it has one.
#[derive(Clone, Debug, Default)]
pub struct Outgoing;

impl tonic::service::Interceptor for Outgoing {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        crate::trace::inject_metadata(request.metadata_mut());
        if let Some(token) = crate::auth::client_token() {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// The channel every generated client is built on.
pub type Client = InterceptedService<Channel, Outgoing>;

/// Wraps `channel` so requests carry what [`Outgoing`] adds.
pub fn client(channel: Channel) -> Client {
    InterceptedService::new(channel, Outgoing)
}

/// Accepted connections with Nagle's algorithm off. `Server::tcp_nodelay`
/// does not reach connections served from a listener of our own: with it
/// on, a unary response (headers, data and trailers written apart) waited
/// out the peer's delayed ACK, 40 ms per call on Linux.
fn no_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Dials `url` now.
pub async fn connect(url: &str) -> Result<Channel, GrpcError> {
    Ok(endpoint(url)?.connect().await?)
}

/// When the caller's deadline (`grpc-timeout`) passes. tonic enforces it
/// until a handler returns its response; a streaming response must watch
/// it itself.
pub fn deadline<T>(request: &tonic::Request<T>) -> Option<tokio::time::Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let timeout = parse_grpc_timeout(value)?;
    tokio::time::Instant::now().checked_add(timeout)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "12", "1x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}

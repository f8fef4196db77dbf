//! The web console: what cleanup will delete, what is pending, and
//! stopping it, from a browser.
//!
//! The console is only a client of the public gRPC APIs of the scheduler
//! and the scrubber. It has no database: every role check stays in the
//! services, and a person acts with the regsweep token they signed in with
//! (kept in an HTTP-only, same-site cookie and forwarded on every call).
//! Pages are rendered on the server and work without JavaScript; one small
//! script of our own (no toolchain) makes the live parts live.

mod assets;
mod backend;
mod config;
mod error;
mod pages;
mod permissions;
mod security;
mod session;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use regsweep_common::Shutdown;
use regsweep_common::grpc;
use tokio::net::TcpListener;

pub use config::Config;
pub use error::ConsoleError;

use backend::Backend;

/// What every handler shares.
#[derive(Clone)]
struct App {
    backend: Arc<Backend>,
    permissions: Arc<permissions::Permissions>,
    cookies: session::CookieRules,
    require_token: bool,
}

/// Binds `config.listen` and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ConsoleError> {
    let listener = grpc::bind(&config.listen).await?;
    serve(config, listener, shutdown).await
}

/// Serves on `listener` until `shutdown`. The services are dialled
/// lazily: the console starts (and says so on its pages) while they are
/// away.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), ConsoleError> {
    let app = App {
        backend: Arc::new(Backend::new(&config.scheduler, &config.scrubber)?),
        permissions: Arc::default(),
        cookies: session::CookieRules { secure: !config.insecure_cookies },
        require_token: config.require_token,
    };
    if let Some(addr) = grpc::local_addr(&listener) {
        tracing::info!(url = %format!("http://{addr}"), "console listening");
    }
    // Pages are small responses: without this they wait out the
    // browser's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ConsoleError::Serve)
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/sign-in", get(pages::sign_in::form).post(pages::sign_in::submit))
        .route("/sign-out", post(pages::sign_in::sign_out))
        .route("/deletions", get(pages::deletions::page))
        .route("/deletions/restore", post(pages::deletions::restore))
        .route("/deletions/approve", post(pages::deletions::approve))
        .route("/jobs", get(pages::jobs::list))
        .route("/jobs/{id}", get(pages::jobs::detail))
        .route("/jobs/{id}/cancel", post(pages::jobs::cancel))
        .route("/jobs/{id}/log", get(pages::jobs::log_stream))
        .route("/policies", get(pages::policies::list))
        .route("/policies/new", get(pages::policies::new_form).post(pages::policies::create))
        .route("/policies/{name}", get(pages::policies::detail))
        .route(
            "/policies/{name}/edit",
            get(pages::policies::edit_form).post(pages::policies::update),
        )
        .route("/repositories", get(pages::repositories::page))
        .route("/workers", get(pages::workers::page))
        .route("/workers/{id}/capacity", post(pages::workers::set_capacity))
        .route("/registries", get(pages::registries::page))
        .route("/charts/deletions", get(pages::overview::chart_fragment))
        .route("/assets/{name}", get(assets::serve))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), security::headers_and_csrf))
        .with_state(app)
}

//! Who may call what: bearer tokens with roles (from a hashed tokens file,
//! reloaded on SIGHUP), the role each rpc needs, and per-caller request
//! rate limits. Enforced by [`layer::AccessLayer`] in front of every
//! service, before any handler runs, so a refused call learns nothing
//! about the resources it named.

mod client;
mod layer;
mod limit;
mod tokens;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use client::{
    ClientAuthArgs, ClientTokenError, Token, header as client_token,
    install as install_client_token,
};
pub use layer::AccessLayer;
pub use limit::{Limited, RateLimits};
pub use tokens::{Tokens, TokensError, hash_line_value};

/// A role a token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Get, list and log rpcs.
    Read,
    /// Everything.
    Admin,
    /// The worker stream, the registry definitions and the catalog and
    /// deletion reports workers (and scrubbers) send the scheduler.
    Worker,
    /// Submitting deletions to the scrubber.
    ScrubberClient,
    /// Marking images in use (a cluster agent reporting what it runs):
    /// nothing else, so a leaked agent token can protect but never delete.
    InUse,
}

impl Role {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "read" => Self::Read,
            "admin" => Self::Admin,
            "worker" => Self::Worker,
            "scrubber-client" => Self::ScrubberClient,
            "in-use" => Self::InUse,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Worker => "worker",
            Self::ScrubberClient => "scrubber-client",
            Self::InUse => "in-use",
        }
    }
}

/// What an rpc needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Health and reflection, unless `--auth-reflection`.
    Open,
    /// Any of these roles (admin always may).
    AnyOf(&'static [Role]),
}

const READ: &[Role] = &[Role::Read];
const ADMIN: &[Role] = &[];
const WORKER: &[Role] = &[Role::Worker];

/// The role table: what each rpc path needs.
pub fn need(path: &str) -> Need {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Need::AnyOf(ADMIN);
    };
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Need::Open,
        ("regsweep.v1.WorkerService", "Connect") => Need::AnyOf(WORKER),
        ("regsweep.v1.RegistryService", "GetRegistry" | "GetProtection") => {
            Need::AnyOf(&[Role::Read, Role::Worker])
        }
        ("regsweep.v1.RegistryService", "MarkInUse") => Need::AnyOf(&[Role::InUse]),
        (
            "regsweep.v1.RepositoryService",
            "ReportRepositories" | "RecordDeletions" | "RecordPushback" | "RecordTagSightings",
        )
        | ("regsweep.v1.PolicyService", "CheckPlan" | "CheckPolicies") => Need::AnyOf(WORKER),
        ("regsweep.v1.ScrubberService", "SubmitDeletions") => Need::AnyOf(&[Role::ScrubberClient]),
        // `ListRegistryRequests` is read like every `List`: the audit record
        // names requests, never credentials.
        (_, m) if m.starts_with("Get") || m.starts_with("List") || m.starts_with("Tail") => {
            Need::AnyOf(READ)
        }
        _ => Need::AnyOf(ADMIN),
    }
}

/// Server flags: tokens, reflection, rate limits.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServerAuthArgs {
    /// Require bearer tokens listed (hashed) in this file: `ROLES NAME
    /// sha256:HEX` per line (`regsweep tokens create` writes one). Reloaded
    /// on SIGHUP. Without it, every caller may call everything.
    #[arg(long, env = "REGSWEEP_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,

    /// Require a token for health checks and reflection too.
    #[arg(long, env = "REGSWEEP_AUTH_REFLECTION")]
    pub auth_reflection: bool,

    /// With mutual TLS, a client certificate whose subject common name is
    /// CN acts with ROLES (`CN=ROLES`, e.g. `worker-7=worker,scrubber-client`)
    /// when it presents no token. Repeatable; the variable takes entries
    /// separated by spaces.
    #[arg(long = "cert-role", env = "REGSWEEP_CERT_ROLES", value_delimiter = ' ', value_parser = parse_cert_role)]
    pub cert_roles: Vec<(String, Vec<Role>)>,

    /// Requests per second each caller (token, or address without tokens)
    /// may make to the `read` and `admin` rpcs, with bursts of as many; 0
    /// for no limit. Calls workers and scrubbers make for their jobs, and
    /// health checks, are not counted.
    #[arg(long, env = "REGSWEEP_RATE_LIMIT", default_value_t = 0.0)]
    pub rate_limit: f64,
}

fn parse_cert_role(text: &str) -> Result<(String, Vec<Role>), String> {
    let (name, roles) =
        text.rsplit_once('=').ok_or("expected CN=ROLES, e.g. worker-7=worker,scrubber-client")?;
    if name.is_empty() {
        return Err("the common name is empty".into());
    }
    let roles = roles
        .split(',')
        .map(|r| Role::parse(r).ok_or_else(|| format!("unknown role {r:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), roles))
}

/// The access rules a server enforces.
#[derive(Debug)]
pub struct Access {
    tokens: Option<(PathBuf, RwLock<Arc<Tokens>>)>,
    cert_roles: Vec<(String, Vec<Role>)>,
    auth_reflection: bool,
    limits: Option<RateLimits>,
}

impl Access {
    /// Loads the tokens file, if any; a file that cannot be used stops the
    /// service at start.
    pub fn from_args(args: &ServerAuthArgs) -> Result<Arc<Self>, TokensError> {
        let tokens = match &args.tokens_file {
            Some(path) => {
                let tokens = Tokens::load(path)?;
                tracing::info!(tokens = tokens.len(), path = %path.display(), "tokens loaded");
                Some((path.clone(), RwLock::new(Arc::new(tokens))))
            }
            None => None,
        };
        let limits = (args.rate_limit > 0.0).then(|| RateLimits::new(args.rate_limit));
        Ok(Arc::new(Self {
            tokens,
            cert_roles: args.cert_roles.clone(),
            auth_reflection: args.auth_reflection,
            limits,
        }))
    }

    /// No tokens and no limits: every call passes.
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            tokens: None,
            cert_roles: Vec::new(),
            auth_reflection: false,
            limits: None,
        })
    }

    /// Whether callers must identify themselves (a token, or a mapped
    /// certificate).
    pub fn requires_identity(&self) -> bool {
        self.tokens.is_some() || !self.cert_roles.is_empty()
    }

    /// Reads the tokens file again; a file that cannot be used leaves the
    /// tokens as they were.
    pub fn reload(&self) {
        let Some((path, current)) = &self.tokens else { return };
        match Tokens::load(path) {
            Ok(tokens) => {
                let count = tokens.len();
                // Swapped before the log line, so whoever reads "tokens
                // reloaded" can rely on the new tokens being in force.
                *current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Arc::new(tokens);
                tracing::info!(tokens = count, path = %path.display(), "tokens reloaded");
            }
            Err(e) => tracing::error!(error = %e, "tokens not reloaded, keeping the previous ones"),
        }
    }

    /// Reloads on every SIGHUP until `shutdown` (only when there is a
    /// tokens file; otherwise SIGHUP keeps its default).
    pub fn reload_on_sighup(self: &Arc<Self>, shutdown: crate::Shutdown) {
        if self.tokens.is_none() {
            return;
        }
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; tokens reload only at restart");
                return;
            }
        };
        let access = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    got = hangups.recv() => if got.is_none() { return },
                    () = shutdown.cancelled() => return,
                }
                access.reload();
            }
        });
    }

    fn tokens(&self) -> Option<Arc<Tokens>> {
        self.tokens
            .as_ref()
            .map(|(_, t)| t.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

//! What the console is told at start.

/// Where the console listens and which services it is a client of. The
/// flags are `regsweep console`'s; TLS towards the services is the
/// process's client settings (`--tls-ca`, `--tls-cert`), installed by the
/// caller, and the token is each signed-in person's own.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address.
    pub listen: String,
    /// Scheduler gRPC URL.
    pub scheduler: String,
    /// Scrubber gRPC URL.
    pub scrubber: String,
    /// Send the sign-in cookie over plain HTTP too (no `Secure`): only for
    /// a console reached without TLS, as `regsweep dev`'s on loopback.
    pub insecure_cookies: bool,
    /// Every page needs a signed-in token. On when the console presents
    /// a client certificate: a call without a token would act with the
    /// certificate's role, the console's own, not the person's.
    pub require_token: bool,
}

impl Config {
    /// Listening on 127.0.0.1:7072, with secure cookies.
    pub fn new(scheduler: impl Into<String>, scrubber: impl Into<String>) -> Self {
        Self {
            listen: "127.0.0.1:7072".into(),
            scheduler: scheduler.into(),
            scrubber: scrubber.into(),
            insecure_cookies: false,
            require_token: false,
        }
    }
}

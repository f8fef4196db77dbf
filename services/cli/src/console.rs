//! `regsweep console`: the web console, a process of its own.

use anyhow::{Context, Result, bail};
use clap::Args;
use regsweep_common::Shutdown;
use regsweep_common::telemetry::{self, LogFormat};

use crate::cli::Cli;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// HTTP listen address.
    #[arg(long, env = "REGSWEEP_CONSOLE_LISTEN", default_value = "127.0.0.1:7072")]
    pub listen: String,

    /// Send the sign-in cookie over plain HTTP too (no `Secure`). Only for
    /// a console reached without TLS on a trusted host; behind an HTTPS
    /// ingress leave it off.
    #[arg(long, env = "REGSWEEP_CONSOLE_INSECURE_COOKIES")]
    pub insecure_cookies: bool,

    /// Log line format on stderr.
    #[arg(long, env = "REGSWEEP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Serves the console against `--scheduler` and `--scrubber` until
/// Ctrl-C or SIGTERM.
pub async fn run(cli: &Cli, args: &ConsoleArgs) -> Result<()> {
    if cli.token.is_some() || cli.token_file.is_some() {
        // One process token would make every person act with it.
        bail!(
            "the console forwards each person's own token: --token and --token-file are not used"
        );
    }
    let telemetry = telemetry::init(args.log_format, "regsweep-console")?;
    let config = regsweep_console::Config {
        listen: args.listen.clone(),
        scheduler: cli.scheduler.clone(),
        scrubber: cli.scrubber.clone(),
        insecure_cookies: args.insecure_cookies,
        // With a client certificate, a call without a person's token
        // would act with the certificate's roles.
        require_token: cli.tls_cert.is_some(),
    };
    let result =
        regsweep_console::run(config, Shutdown::from_os_signals()).await.context("console");
    telemetry.shutdown().await;
    result
}

//! `regsweep`: the admin client of every regsweep API.

mod apply;
mod cli;
mod client;
mod console;
mod crons;
mod declared;
mod dev;
mod jobs;
mod output;
mod policies;
mod registries;
mod scrub;
mod tokens;
mod workers;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use regsweep_common::auth::ClientAuthArgs;
use regsweep_common::telemetry::{self, LogFormat};
use regsweep_common::tls::{self, ClientTlsArgs, TlsIdentityArgs};
use tracing::Instrument as _;

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut Cli::command()))
        .unwrap_or_else(|e| e.exit());
    if let Command::Dev(_) = &cli.command {
        // The services it hosts set up their own telemetry and clients, and
        // their spans are not the command's.
        return report(run(&cli).await);
    }
    if let Command::Console(_) = &cli.command {
        // A server: its own telemetry, TLS towards the services, and no
        // process token (each person's own is forwarded).
        if let Err(e) = install_client_tls(&cli) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        return report(run(&cli).await);
    }
    if let Err(e) = install_client_settings(&cli) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    // Traces only when asked for: the command is then one span, the
    // parent of the services' rpc spans. A collector that cannot be set up
    // costs the traces, not the command.
    let telemetry = if telemetry::otlp_configured() {
        match telemetry::init_quiet(LogFormat::Text, "regsweep") {
            Ok(telemetry) => Some(telemetry),
            Err(e) => {
                eprintln!("warning: traces are not exported: {e}");
                None
            }
        }
    } else {
        None
    };
    let path = command_path(&matches);
    let span =
        tracing::info_span!("regsweep", otel.name = %format!("regsweep {path}"), command = %path);
    let result = run(&cli).instrument(span).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    report(result)
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Jobs(command) => jobs::run(cli, command).await,
        Command::Workers(command) => workers::run(cli, command).await,
        Command::Crons(command) => crons::run(cli, command).await,
        Command::Registries(command) => registries::run(cli, command).await,
        Command::Repositories(command) => registries::run_repositories(cli, command).await,
        Command::Policies(command) => policies::run(cli, command).await,
        Command::Apply(args) => apply::apply(cli, args).await,
        Command::Export(args) => apply::export(cli, args).await,
        Command::Scrub(command) => scrub::run(cli, command).await,
        Command::Tokens(command) => tokens::run(command),
        Command::Dev(args) => dev::run(args).await,
        Command::Console(args) => console::run(cli, args).await,
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", client::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The subcommands given, `jobs create` say.
fn command_path(matches: &clap::ArgMatches) -> String {
    let mut names = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        names.push(name);
        current = sub;
    }
    names.join(" ")
}

fn install_client_tls(cli: &Cli) -> anyhow::Result<()> {
    let identity = TlsIdentityArgs { tls_cert: cli.tls_cert.clone(), tls_key: cli.tls_key.clone() };
    tls::install_client(&identity, &ClientTlsArgs { tls_ca: cli.tls_ca.clone() })?;
    Ok(())
}

fn install_client_settings(cli: &Cli) -> anyhow::Result<()> {
    install_client_tls(cli)?;
    let token = ClientAuthArgs { token: cli.token.clone(), token_file: cli.token_file.clone() };
    regsweep_common::auth::install_client_token(&token)?;
    Ok(())
}

//! `regsweep`: the admin client of every regsweep API.

mod cli;
mod client;
mod crons;
mod dev;
mod jobs;
mod output;
mod policies;
mod registries;
mod scrub;
mod tokens;
mod workers;

use std::process::ExitCode;

use clap::Parser;
use regsweep_common::auth::ClientAuthArgs;
use regsweep_common::tls::{self, ClientTlsArgs, TlsIdentityArgs};

use crate::cli::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let identity = TlsIdentityArgs { tls_cert: cli.tls_cert.clone(), tls_key: cli.tls_key.clone() };
    if let Err(e) = tls::install_client(&identity, &ClientTlsArgs { tls_ca: cli.tls_ca.clone() }) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let token = ClientAuthArgs { token: cli.token.clone(), token_file: cli.token_file.clone() };
    if let Err(e) = regsweep_common::auth::install_client_token(&token) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Jobs(command) => jobs::run(&cli, command).await,
        Command::Workers(command) => workers::run(&cli, command).await,
        Command::Crons(command) => crons::run(&cli, command).await,
        Command::Registries(command) => registries::run(&cli, command).await,
        Command::Repositories(command) => registries::run_repositories(&cli, command).await,
        Command::Policies(command) => policies::run(&cli, command).await,
        Command::Scrub(command) => scrub::run(&cli, command).await,
        Command::Tokens(command) => tokens::run(command),
        Command::Dev(args) => dev::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", client::describe(&e));
            ExitCode::FAILURE
        }
    }
}

//! `regsweep tokens`: making tokens and the lines of the tokens file.

use std::io::Read as _;

use anyhow::{Context, Result, ensure};
use regsweep_common::auth::{Role, hash_line_value};

use crate::cli::TokensCommand;

pub fn run(command: &TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create { name, roles } => {
            for role in roles.split(',') {
                ensure!(
                    Role::parse(role).is_some(),
                    "unknown role {role:?}: use read, admin, worker, scrubber-client or in-use"
                );
            }
            ensure!(
                !name.is_empty() && !name.contains(char::is_whitespace),
                "the name must be one word"
            );
            let token = format!("rsw_{}", hex::encode(rand::random::<[u8; 32]>()));
            println!("token (shown once; give it to the client): {token}");
            println!("tokens file line: {roles} {name} {}", hash_line_value(&token));
        }
        TokensCommand::Hash => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token).context("reading the token on stdin")?;
            ensure!(!token.trim().is_empty(), "no token on stdin");
            println!("{}", hash_line_value(token.trim()));
        }
    }
    Ok(())
}

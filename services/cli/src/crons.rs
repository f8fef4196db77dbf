//! `regsweep crons ...`

use anyhow::{Context, Result};
use regsweep_proto::v1;
use regsweep_proto::{json_to_struct, struct_to_json};

use crate::cli::{Cli, CronsCommand, Output};
use crate::client;
use crate::output::{self, Table, time};

pub async fn run(cli: &Cli, command: &CronsCommand) -> Result<()> {
    let mut crons = client::crons(&cli.scheduler).await?;
    let cron = match command {
        CronsCommand::Create(args) => {
            let cron = v1::Cron {
                name: args.name.clone(),
                schedule: args.schedule.clone(),
                kind: args.kind.clone(),
                args: Some(json_to_struct(client::json_object("--args", &args.args)?)),
                disabled: args.disabled,
                priority: args.priority,
                ..Default::default()
            };
            crons.create_cron(v1::CreateCronRequest { cron: Some(cron) }).await?.into_inner().cron
        }
        CronsCommand::Get { name } => {
            crons.get_cron(v1::GetCronRequest { name: name.clone() }).await?.into_inner().cron
        }
        CronsCommand::List => {
            let list = crons.list_crons(v1::ListCronsRequest {}).await?.into_inner().crons;
            return match cli.output {
                Output::Json => output::json(&list),
                Output::Table => {
                    print_crons(&list);
                    Ok(())
                }
            };
        }
        CronsCommand::Update(args) => {
            let mut mask = Vec::new();
            let mut cron = v1::Cron { name: args.name.clone(), ..Default::default() };
            if let Some(schedule) = &args.schedule {
                cron.schedule.clone_from(schedule);
                mask.push("schedule".to_string());
            }
            if let Some(kind) = &args.kind {
                cron.kind.clone_from(kind);
                mask.push("kind".to_string());
            }
            if let Some(job_args) = &args.args {
                cron.args = Some(json_to_struct(client::json_object("--args", job_args)?));
                mask.push("args".to_string());
            }
            if let Some(priority) = args.priority {
                cron.priority = priority;
                mask.push("priority".to_string());
            }
            if let Some(disabled) = args.disabled {
                cron.disabled = disabled;
                mask.push("disabled".to_string());
            }
            anyhow::ensure!(!mask.is_empty(), "nothing to change: give at least one field flag");
            let request = v1::UpdateCronRequest { cron: Some(cron), update_mask: mask };
            crons.update_cron(request).await?.into_inner().cron
        }
        CronsCommand::Delete { name } => {
            crons.delete_cron(v1::DeleteCronRequest { name: name.clone() }).await?;
            return match cli.output {
                Output::Json => output::json(&serde_json::json!({"name": name, "deleted": true})),
                Output::Table => {
                    println!("cron {name} deleted");
                    Ok(())
                }
            };
        }
    };
    let cron = cron.context("server returned no cron")?;
    match cli.output {
        Output::Json => output::json(&cron),
        Output::Table => {
            print_crons(std::slice::from_ref(&cron));
            Ok(())
        }
    }
}

fn print_crons(crons: &[v1::Cron]) {
    let mut table =
        Table::new(&["NAME", "SCHEDULE", "KIND", "ENABLED", "NEXT", "LAST", "LAST JOB", "ARGS"]);
    for c in crons {
        table.row(vec![
            c.name.clone(),
            c.schedule.clone(),
            c.kind.clone(),
            (!c.disabled).to_string(),
            time(c.next_fire_at.as_ref()),
            time(c.last_fire_at.as_ref()),
            if c.last_job_id == 0 { "-".into() } else { c.last_job_id.to_string() },
            c.args.as_ref().map_or_else(|| "{}".into(), |a| struct_to_json(a).to_string()),
        ]);
    }
    table.print();
}

//! `regsweep workers ...`

use anyhow::Result;
use regsweep_proto::v1;

use crate::cli::{Cli, Output, WorkersCommand};
use crate::client;
use crate::output::{self, Table, time};

pub async fn run(cli: &Cli, command: &WorkersCommand) -> Result<()> {
    let mut jobs = client::jobs(&cli.scheduler).await?;
    match command {
        WorkersCommand::List { all } => {
            let workers = client::pages(None, |page_size, page_token| {
                let mut jobs = jobs.clone();
                let request = v1::ListWorkersRequest { include_gone: *all, page_size, page_token };
                async move {
                    let page = jobs.list_workers(request).await?.into_inner();
                    Ok((page.workers, page.next_page_token))
                }
            })
            .await?;
            if cli.output == Output::Json {
                return output::json(&workers);
            }
            let mut table =
                Table::new(&["ID", "NAME", "STATUS", "RUNNING", "CAPACITY", "HEARTBEAT EXPIRES"]);
            for w in &workers {
                table.row(vec![
                    w.id.clone(),
                    w.name.clone(),
                    w.status().short_name().to_string(),
                    counts(&w.running),
                    counts(&w.capacity),
                    time(w.heartbeat_expiration.as_ref()),
                ]);
            }
            table.print();
        }
        WorkersCommand::Capacity { worker, capacity } => {
            let request = v1::SetWorkerCapacityRequest {
                worker_id: worker.clone(),
                capacity: capacity.iter().cloned().collect(),
            };
            let response = jobs.set_worker_capacity(request).await?.into_inner();
            let worker = response.worker.unwrap_or_default();
            match cli.output {
                Output::Json => output::json(&worker)?,
                Output::Table => {
                    println!("worker {}: capacity {}", worker.id, counts(&worker.capacity))
                }
            }
        }
    }
    Ok(())
}

fn counts(map: &std::collections::HashMap<String, u32>) -> String {
    let mut pairs: Vec<_> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    if pairs.is_empty() { "-".to_string() } else { pairs.join(",") }
}

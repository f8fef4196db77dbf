//! `regsweep registries ...` and `regsweep repositories ...`

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use regsweep_proto::v1::{self, CleanupStatus};

use crate::cli::{Cli, Output};
use crate::client;
use crate::output::{self, Table, time};

#[derive(Debug, Subcommand)]
pub enum RegistriesCommand {
    /// Add a registry.
    Create(RegistryArgs),
    /// Show one registry.
    Get {
        /// Registry name.
        name: String,
    },
    /// List registries.
    List,
    /// Change a registry: only the flags given change.
    Update(RegistryArgs),
    /// Remove a registry and its repositories (not while policies use it).
    Delete {
        /// Registry name.
        name: String,
    },
    /// Probe what the registry allows now (manifest deletes, tag deletes,
    /// the referrers API) with requests that change nothing: runs a
    /// catalog sync and waits for its probe.
    Check {
        /// Registry name.
        name: String,
        /// How long to wait for a worker to probe.
        #[arg(long, value_parser = regsweep_common::duration::parse, default_value = "60s")]
        timeout: std::time::Duration,
    },
    /// Mark images in use (`REPOSITORY@DIGEST`): no policy plans them, nor
    /// anything they reach, until the marks lapse.
    MarkInUse {
        /// Registry name.
        name: String,
        /// Who holds the marks (a cluster, a pipeline).
        #[arg(long)]
        holder: String,
        /// How long the marks last (1m to 30d).
        #[arg(long, value_parser = regsweep_common::duration::parse, default_value = "24h")]
        ttl: std::time::Duration,
        /// Release the holder's other marks on the registry.
        #[arg(long)]
        replace: bool,
        /// `REPOSITORY@DIGEST`, repeated.
        images: Vec<String>,
    },
    /// Show what may not be deleted from one repository: the protection
    /// list and the digests marked in use now.
    Protection {
        /// Registry name.
        name: String,
        /// Repository name.
        repository: String,
    },
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Base URL, http or https.
    #[arg(long)]
    pub url: Option<String>,
    /// User name (with --password-file or --password-env).
    #[arg(long)]
    pub username: Option<String>,
    /// File holding the password, read by workers and scrubbers.
    #[arg(long)]
    pub password_file: Option<String>,
    /// Environment variable holding the password, read by workers and scrubbers.
    #[arg(long)]
    pub password_env: Option<String>,
    /// Docker config.json whose `auths` entry for the registry is used.
    #[arg(long)]
    pub docker_config: Option<String>,
    /// Requests per second per process (0: unlimited).
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Deletions in flight at once (0: the scrubber's default).
    #[arg(long = "max-parallel")]
    pub max_parallel: Option<u32>,
    /// A host (or host:port) whose Bearer realms are followed even over
    /// http or inside the network (repeatable; on update, replaces the
    /// list; `--realm-allow ''` clears it).
    #[arg(long = "realm-allow")]
    pub realm_allow: Vec<String>,
    /// Tags matching this regex (whole tag) are never deleted (repeatable;
    /// on update, replaces the tag patterns; `''` clears them).
    #[arg(long = "protect-tag")]
    pub protect_tag: Vec<String>,
    /// A manifest digest never deleted, nor what it reaches (repeatable;
    /// on update, replaces the digests; `''` clears them).
    #[arg(long = "protect-digest")]
    pub protect_digest: Vec<String>,
    /// Repositories (glob) nothing is deleted from (repeatable; on update,
    /// replaces the globs; `''` clears them).
    #[arg(long = "protect-repository")]
    pub protect_repository: Vec<String>,
}

/// A repeatable flag as a list: `None` when not given, `''` for empty.
fn flag_list(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.iter().filter(|v| !v.is_empty()).cloned().collect())
}

impl RegistryArgs {
    fn to_proto(&self) -> (v1::Registry, Vec<String>) {
        let mut mask = Vec::new();
        let mut registry = v1::Registry { name: self.name.clone(), ..Default::default() };
        if let Some(url) = &self.url {
            registry.url.clone_from(url);
            mask.push("url".to_string());
        }
        let credentials =
            [&self.username, &self.password_file, &self.password_env, &self.docker_config];
        if credentials.iter().any(|c| c.is_some()) {
            registry.credentials = Some(v1::RegistryCredentials {
                username: self.username.clone().unwrap_or_default(),
                password_file: self.password_file.clone().unwrap_or_default(),
                password_env: self.password_env.clone().unwrap_or_default(),
                docker_config: self.docker_config.clone().unwrap_or_default(),
            });
            mask.push("credentials".to_string());
        }
        if let Some(rate) = self.rate_limit {
            registry.rate_limit = rate;
            mask.push("rate_limit".to_string());
        }
        if let Some(n) = self.max_parallel {
            registry.max_parallel_deletions = n;
            mask.push("max_parallel_deletions".to_string());
        }
        if !self.realm_allow.is_empty() {
            registry.realm_allow_list =
                self.realm_allow.iter().filter(|h| !h.is_empty()).cloned().collect();
            mask.push("realm_allow_list".to_string());
        }
        (registry, mask)
    }

    /// Whether any `--protect-*` flag was given.
    fn protects(&self) -> bool {
        [&self.protect_tag, &self.protect_digest, &self.protect_repository]
            .iter()
            .any(|l| !l.is_empty())
    }

    /// `current` with the lists these flags give replaced.
    fn protection(&self, current: Option<v1::RegistryProtection>) -> v1::RegistryProtection {
        let mut p = current.unwrap_or_default();
        if let Some(tags) = flag_list(&self.protect_tag) {
            p.tag_patterns = tags;
        }
        if let Some(digests) = flag_list(&self.protect_digest) {
            p.digests = digests;
        }
        if let Some(globs) = flag_list(&self.protect_repository) {
            p.repository_globs = globs;
        }
        p
    }
}

#[derive(Debug, Subcommand)]
pub enum RepositoriesCommand {
    /// Read a registry's catalog now (a `catalog_sync` job).
    Sync {
        /// Registry name.
        #[arg(long)]
        registry: String,
    },
    /// List repositories with their policy and cleanup state.
    List {
        /// Only this registry's.
        #[arg(long)]
        registry: Option<String>,
        /// Only this cleanup status: unscheduled, scheduled, unfinished, ongoing.
        #[arg(long)]
        status: Option<String>,
        /// Only those this policy covers.
        #[arg(long)]
        policy: Option<String>,
        /// Most repositories to print; follows pages until reached.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(cli: &Cli, command: &RegistriesCommand) -> Result<()> {
    let mut registries = client::registries(&cli.scheduler).await?;
    let registry = match command {
        RegistriesCommand::Create(args) => {
            let (mut registry, _) = args.to_proto();
            registry.protection = Some(args.protection(None));
            let request =
                v1::CreateRegistryRequest { registry: Some(registry), ..Default::default() };
            registries.create_registry(request).await?.into_inner().registry
        }
        RegistriesCommand::Get { name } => {
            let request = v1::GetRegistryRequest { name: name.clone() };
            registries.get_registry(request).await?.into_inner().registry
        }
        RegistriesCommand::List => {
            let list = registries
                .list_registries(v1::ListRegistriesRequest {})
                .await?
                .into_inner()
                .registries;
            return print_registries(cli.output, &list);
        }
        RegistriesCommand::Update(args) => {
            let (mut registry, mut mask) = args.to_proto();
            if args.protects() {
                // Only the lists given change: the others are read first.
                let get = v1::GetRegistryRequest { name: args.name.clone() };
                let current = registries.get_registry(get).await?.into_inner().registry;
                registry.protection = Some(args.protection(current.and_then(|r| r.protection)));
                mask.push("protection".to_string());
            }
            anyhow::ensure!(!mask.is_empty(), "nothing to change: give at least one field flag");
            let request = v1::UpdateRegistryRequest {
                registry: Some(registry),
                update_mask: mask,
                ..Default::default()
            };
            registries.update_registry(request).await?.into_inner().registry
        }
        RegistriesCommand::Delete { name } => {
            registries.delete_registry(v1::DeleteRegistryRequest { name: name.clone() }).await?;
            return output::deleted(cli.output, "registry", name);
        }
        RegistriesCommand::Check { name, timeout } => Some(check(cli, name, *timeout).await?),
        RegistriesCommand::MarkInUse { name, holder, ttl, replace, images } => {
            return mark_in_use(cli, name, holder, *ttl, *replace, images).await;
        }
        RegistriesCommand::Protection { name, repository } => {
            return print_protection(cli, name, repository).await;
        }
    };
    let registry = registry.context("server returned no registry")?;
    print_registries(cli.output, std::slice::from_ref(&registry))
}

fn print_registries(format: Output, registries: &[v1::Registry]) -> Result<()> {
    if format == Output::Json {
        return output::json(registries);
    }
    let mut table = Table::new(&[
        "NAME",
        "URL",
        "AUTH",
        "RATE LIMIT",
        "MAX PARALLEL",
        "DELETES",
        "TAG DELETES",
        "REFERRERS",
        "CHECKED",
        "CREATED",
    ]);
    for r in registries {
        let c = r.credentials.clone().unwrap_or_default();
        let auth = if !c.docker_config.is_empty() {
            format!("docker config {}", c.docker_config)
        } else if !c.username.is_empty() {
            format!("user {}", c.username)
        } else {
            "anonymous".to_string()
        };
        let caps = r.capabilities.clone().unwrap_or_default();
        let checked = r.capabilities.is_some();
        let mut cells = vec![
            r.name.clone(),
            r.url.clone(),
            auth,
            if r.rate_limit > 0.0 { format!("{}/s", r.rate_limit) } else { "-".into() },
            if r.max_parallel_deletions > 0 {
                r.max_parallel_deletions.to_string()
            } else {
                "-".into()
            },
        ];
        for support in [caps.manifest_deletes(), caps.tag_deletes(), caps.referrers()] {
            cells.push(support_name(support, checked).into());
        }
        cells.push(time(caps.checked_at.as_ref()));
        cells.push(time(r.created_at.as_ref()));
        table.row(cells);
    }
    table.print();
    for r in registries {
        if let Some(detail) = r.capabilities.as_ref().map(|c| &c.detail).filter(|d| !d.is_empty()) {
            println!("{}: {detail}", r.name);
        }
        if let Some(p) = &r.pushback {
            println!(
                "{}: pushed back ({}) at {:.1} requests/s, {}",
                r.name,
                p.status,
                p.rate,
                time(p.at.as_ref())
            );
        }
        let p = r.protection.clone().unwrap_or_default();
        for (what, list) in [
            ("tags", &p.tag_patterns),
            ("digests", &p.digests),
            ("repositories", &p.repository_globs),
        ] {
            if !list.is_empty() {
                println!("{}: protected {what}: {}", r.name, list.join(" "));
            }
        }
    }
    Ok(())
}

async fn mark_in_use(
    cli: &Cli,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
    replace: bool,
    images: &[String],
) -> Result<()> {
    let images = images
        .iter()
        .map(|i| {
            let (repository, digest) =
                i.split_once('@').with_context(|| format!("{i:?}: give REPOSITORY@DIGEST"))?;
            Ok(v1::ImageReference { repository: repository.into(), digest: digest.into() })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut registries = client::registries(&cli.scheduler).await?;
    let request = v1::MarkInUseRequest {
        registry: name.into(),
        holder: holder.into(),
        ttl: Some(regsweep_proto::duration_from_std(ttl)),
        images,
        replace,
    };
    let answer = registries.mark_in_use(request).await?.into_inner();
    if cli.output == Output::Json {
        return output::json(&answer);
    }
    println!(
        "{} marked in use until {}, {} released",
        answer.marked,
        time(answer.expires_at.as_ref()),
        answer.released
    );
    Ok(())
}

async fn print_protection(cli: &Cli, name: &str, repository: &str) -> Result<()> {
    let mut registries = client::registries(&cli.scheduler).await?;
    let request = v1::GetProtectionRequest { registry: name.into(), repository: repository.into() };
    let answer = registries.get_protection(request).await?.into_inner();
    if cli.output == Output::Json {
        return output::json(&answer);
    }
    if !answer.repository_glob.is_empty() {
        println!("{repository}: protected whole by {:?}", answer.repository_glob);
    }
    let p = answer.protection.unwrap_or_default();
    println!("protected tags: {}", p.tag_patterns.join(" "));
    println!("protected digests: {}", p.digests.join(" "));
    let mut table = Table::new(&["IN USE", "HOLDER", "UNTIL"]);
    for m in &answer.in_use {
        table.row(vec![m.digest.clone(), m.holder.clone(), time(m.expires_at.as_ref())]);
    }
    table.print();
    Ok(())
}

/// A catalog sync of `name` started after this call: one already under
/// way (the registry's first, say) may have probed before the caller
/// looked, so it is waited out and a new one started.
async fn fresh_sync(
    cli: &Cli,
    name: &str,
    deadline: tokio::time::Instant,
) -> Result<Option<v1::Job>> {
    let mut repositories = client::repositories(&cli.scheduler).await?;
    let request = v1::SyncRepositoriesRequest { registry: name.into() };
    let sync = repositories.sync_repositories(request.clone()).await?.into_inner();
    let Some(running) = sync.job.as_ref().filter(|_| !sync.created) else {
        return Ok(sync.job);
    };
    let mut jobs = client::jobs(&cli.scheduler).await?;
    loop {
        let get = v1::GetJobRequest { id: running.id };
        let job = jobs.get_job(get).await?.into_inner().job.context("server returned no job")?;
        if job.status().is_terminal() {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "catalog_sync job {} of {name} did not end in time; are workers running?",
            running.id
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(repositories.sync_repositories(request).await?.into_inner().job)
}

fn support_name(support: v1::Support, checked: bool) -> &'static str {
    match (checked, support) {
        (false, _) => "-",
        (true, v1::Support::Yes) => "yes",
        (true, v1::Support::No) => "no",
        (true, v1::Support::Unspecified) => "unknown",
    }
}

/// Runs a catalog sync of `name` and waits for its probe; returns the
/// registry as it stands then.
async fn check(cli: &Cli, name: &str, timeout: std::time::Duration) -> Result<v1::Registry> {
    let mut registries = client::registries(&cli.scheduler).await?;
    let get = v1::GetRegistryRequest { name: name.into() };
    let before = registries.get_registry(get.clone()).await?.into_inner().registry;
    let checked_at = |r: &Option<v1::Registry>| {
        r.as_ref().and_then(|r| r.capabilities.as_ref()?.checked_at).map(|t| (t.seconds, t.nanos))
    };
    let previous = checked_at(&before);
    let deadline = tokio::time::Instant::now() + timeout;
    let job = fresh_sync(cli, name, deadline).await?;
    loop {
        let now = registries.get_registry(get.clone()).await?.into_inner().registry;
        if checked_at(&now) != previous {
            return now.context("server returned no registry");
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no worker probed {name} within {timeout:?} (catalog_sync job {}); are workers running?",
            job.map_or(0, |j| j.id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn parse_status(text: &str) -> Result<CleanupStatus> {
    CleanupStatus::from_str_name(&format!("CLEANUP_STATUS_{}", text.to_ascii_uppercase()))
        .with_context(|| {
            format!("unknown status {text:?}: use unscheduled, scheduled, unfinished or ongoing")
        })
}

pub async fn run_repositories(cli: &Cli, command: &RepositoriesCommand) -> Result<()> {
    let mut repositories = client::repositories(&cli.scheduler).await?;
    match command {
        RepositoriesCommand::Sync { registry } => {
            let request = v1::SyncRepositoriesRequest { registry: registry.clone() };
            let response = repositories.sync_repositories(request).await?.into_inner();
            let job = response.job.context("server returned no job")?;
            match cli.output {
                Output::Json => output::json(&job),
                Output::Table => {
                    let verb = if response.created { "enqueued" } else { "already queued" };
                    println!("catalog sync of {registry} {verb}: job {}", job.id);
                    Ok(())
                }
            }
        }
        RepositoriesCommand::List { registry, status, policy, limit } => {
            let cleanup_status =
                status.as_deref().map(parse_status).transpose()?.unwrap_or_default();
            let all = client::pages(Some(*limit as usize), |page_size, page_token| {
                let mut repositories = repositories.clone();
                let request = v1::ListRepositoriesRequest {
                    registry: registry.clone().unwrap_or_default(),
                    cleanup_status: cleanup_status.into(),
                    policy: policy.clone().unwrap_or_default(),
                    page_size,
                    page_token,
                };
                async move {
                    let page = repositories.list_repositories(request).await?.into_inner();
                    Ok((page.repositories, page.next_page_token))
                }
            })
            .await?;
            if cli.output == Output::Json {
                return output::json(&all);
            }
            let mut table = Table::new(&[
                "REGISTRY",
                "NAME",
                "POLICY",
                "STATUS",
                "STARTED",
                "FINISHED",
                "DELETED",
                "FREES",
                "LAST JOB",
                "LAST ERROR",
                "WHY",
            ]);
            for r in &all {
                table.row(vec![
                    r.registry.clone(),
                    r.name.clone(),
                    output::short(&r.policy, 64),
                    r.cleanup_status()
                        .as_str_name()
                        .trim_start_matches("CLEANUP_STATUS_")
                        .to_ascii_lowercase(),
                    time(r.cleanup_started_at.as_ref()),
                    time(r.cleanup_finished_at.as_ref()),
                    r.last_deleted_count.to_string(),
                    crate::output::bytes(r.last_reclaimable_bytes),
                    if r.last_job_id == 0 { "-".into() } else { r.last_job_id.to_string() },
                    output::short(&r.last_error, 60),
                    output::short(&r.policy_reason, 100),
                ]);
            }
            table.print();
            Ok(())
        }
    }
}

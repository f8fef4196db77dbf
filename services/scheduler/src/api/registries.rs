//! `regsweep.v1.RegistryService`.

use std::sync::Arc;

use regsweep_common::FieldViolations;
use regsweep_common::address::AddressClass;
use regsweep_proto::v1::{self, registry_service_server::RegistryService};
use tonic::{Request, Response, Status};

use super::etag;
use super::mask::UpdateMask;
use crate::error::ApiError;
use crate::store::JobStore;
use crate::store::catalog::{CatalogStore, DeleteRegistryOutcome, NewRegistry, RegistryRecord};

const UPDATABLE: &[&str] = &[
    "url",
    "credentials",
    "rate_limit",
    "max_parallel_deletions",
    "realm_allow_list",
    "protection",
];
/// Most hosts on a realm allow-list.
const MAX_REALM_HOSTS: usize = 16;
/// Highest rate limit accepted, in requests per second.
pub const MAX_RATE_LIMIT: f64 = 100_000.0;
/// Most deletions in flight against one registry.
pub const MAX_PARALLEL_DELETIONS: u32 = 1024;
const MAX_PATH_BYTES: usize = 4096;

/// Serves registry definitions.
#[derive(Clone)]
pub struct RegistryApi {
    catalog: Arc<dyn CatalogStore>,
    jobs: Arc<dyn JobStore>,
}

impl RegistryApi {
    pub fn new(catalog: Arc<dyn CatalogStore>, jobs: Arc<dyn JobStore>) -> Self {
        Self { catalog, jobs }
    }

    /// One read-modify-write of `update_registry`, answering the registry
    /// as written (or as it would be, with `validate_only`); `None` when
    /// it lost to another write.
    async fn update_once(
        &self,
        req: &v1::UpdateRegistryRequest,
    ) -> Result<Option<v1::Registry>, ApiError> {
        let update = req.registry.clone().unwrap_or_default();
        let current = self
            .catalog
            .get_registry(&update.name)
            .await?
            .ok_or_else(|| not_found(&update.name))?;
        etag::check("registry", &update.name, &req.etag, current.updated_at)?;
        let merged = merge(&current, &update, &req.update_mask)?;
        let mut registry = validate(&merged)?;
        if req.validate_only {
            return Ok(Some(merged));
        }
        registry.expected_updated_at = Some(current.updated_at);
        Ok(self.catalog.update_registry(registry).await?.map(|r| r.to_proto()))
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("registry {name:?} not found"))
}

/// Checks a resource name: 1 to 64 of a-z 0-9 - _ . starting with a
/// letter or digit.
pub fn validate_name(field: &str, name: &str, v: &mut FieldViolations) {
    super::crons::validate_name_as(field, name, v);
}

/// Checks a registry URL: http or https, a host, nothing that would leak
/// (user info) or be ignored (query, fragment).
pub fn validate_url(url: &str, v: &mut FieldViolations) {
    const FIELD: &str = "registry.url";
    if url.len() > 2048 {
        v.add(FIELD, "must be at most 2048 bytes");
        return;
    }
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => {
            v.add(FIELD, format!("is not a URL: {e}"));
            return;
        }
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        v.add(FIELD, "must be http or https");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        v.add(FIELD, "must name a host");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        v.add(FIELD, "must not carry credentials; use registry.credentials");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        v.add(FIELD, "must not have a query or fragment");
    }
    if let Some(why) = unreachable_host(&parsed) {
        v.add(FIELD, format!("must not be {why}: regsweep would send credentials there"));
    }
}

/// Hosts no registry lives on: link-local addresses (cloud metadata
/// services among them), the metadata services' names, and non-unicast
/// addresses. Loopback and private addresses stay allowed: registries
/// inside the network are normal.
fn unreachable_host(url: &url::Url) -> Option<AddressClass> {
    url.host().and_then(AddressClass::of_host).filter(|c| c.never_trusted())
}

fn validate_credentials(c: &v1::RegistryCredentials, v: &mut FieldViolations) {
    let field = |f: &str| format!("registry.credentials.{f}");
    for (name, value) in [
        ("username", &c.username),
        ("password_file", &c.password_file),
        ("password_env", &c.password_env),
        ("docker_config", &c.docker_config),
    ] {
        if value.len() > MAX_PATH_BYTES || value.contains('\0') {
            v.add(field(name), format!("must be at most {MAX_PATH_BYTES} bytes, with no NUL"));
        }
    }
    let has_password_fields =
        !(c.username.is_empty() && c.password_file.is_empty() && c.password_env.is_empty());
    if !c.docker_config.is_empty() && has_password_fields {
        v.add(field("docker_config"), "excludes username, password_file and password_env");
    }
    if !c.password_file.is_empty() && !c.password_env.is_empty() {
        v.add(field("password_env"), "give password_file or password_env, not both");
    }
    if (!c.password_file.is_empty() || !c.password_env.is_empty()) && c.username.is_empty() {
        v.add(field("username"), "is required with a password");
    }
    if !c.username.is_empty()
        && c.password_file.is_empty()
        && c.password_env.is_empty()
        && c.docker_config.is_empty()
    {
        v.add(field("username"), "needs password_file or password_env");
    }
    let env = &c.password_env;
    let env_name_ok = env.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
        && env.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !env.is_empty() && !env_name_ok {
        v.add(
            field("password_env"),
            "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
        );
    }
    for (name, path) in [("password_file", &c.password_file), ("docker_config", &c.docker_config)] {
        if !path.is_empty() && !path.starts_with('/') {
            v.add(field(name), "must be an absolute path");
        }
    }
}

/// Checks a registry definition.
pub fn validate(r: &v1::Registry) -> Result<NewRegistry, FieldViolations> {
    let mut v = FieldViolations::new();
    validate_name("registry.name", &r.name, &mut v);
    validate_url(&r.url, &mut v);
    let credentials = r.credentials.clone().unwrap_or_default();
    validate_credentials(&credentials, &mut v);
    if !(r.rate_limit.is_finite() && (0.0..=MAX_RATE_LIMIT).contains(&r.rate_limit)) {
        v.add("registry.rate_limit", format!("must be from 0 (unlimited) to {MAX_RATE_LIMIT}"));
    }
    if r.max_parallel_deletions > MAX_PARALLEL_DELETIONS {
        v.add(
            "registry.max_parallel_deletions",
            format!("must be from 0 (default) to {MAX_PARALLEL_DELETIONS}"),
        );
    }
    validate_realm_allow_list(&r.realm_allow_list, &mut v);
    super::protection::validate_list(r.protection.as_ref(), &mut v);
    v.into_result()?;
    Ok(NewRegistry {
        name: r.name.clone(),
        url: r.url.trim_end_matches('/').to_string(),
        credentials,
        rate_limit: r.rate_limit,
        max_parallel_deletions: r.max_parallel_deletions,
        realm_allow_list: r.realm_allow_list.clone(),
        protection: super::protection::spec(r.protection.as_ref()),
        expected_updated_at: None,
    })
}

/// Each entry a lowercase host or `host:port`: no scheme, path or user,
/// and never a link-local or metadata address.
fn validate_realm_allow_list(hosts: &[String], v: &mut FieldViolations) {
    if hosts.len() > MAX_REALM_HOSTS {
        v.add("registry.realm_allow_list", format!("must have at most {MAX_REALM_HOSTS} hosts"));
        return;
    }
    for (i, host) in hosts.iter().enumerate() {
        let field = format!("registry.realm_allow_list[{i}]");
        let parsed = (host.len() <= 260 && !host.is_empty())
            .then(|| url::Url::parse(&format!("http://{host}")).ok())
            .flatten()
            .filter(|u| {
                u.username().is_empty()
                    && u.password().is_none()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
        let Some(parsed) = parsed else {
            v.add(field, "must be a host or host:port, without scheme or path");
            continue;
        };
        if *host != host.to_ascii_lowercase() {
            v.add(field, "must be lowercase");
        } else if let Some(why) = unreachable_host(&parsed) {
            v.add(field, format!("must not be {why}"));
        }
    }
}

fn merge(
    current: &RegistryRecord,
    update: &v1::Registry,
    mask: &[String],
) -> Result<v1::Registry, FieldViolations> {
    let mask = UpdateMask::parse(mask, UPDATABLE)?;
    let has = |f: &str| mask.has(f);
    let mut merged = current.to_proto();
    if has("url") {
        merged.url.clone_from(&update.url);
    }
    if has("credentials") {
        merged.credentials.clone_from(&update.credentials);
    }
    if has("rate_limit") {
        merged.rate_limit = update.rate_limit;
    }
    if has("max_parallel_deletions") {
        merged.max_parallel_deletions = update.max_parallel_deletions;
    }
    if has("realm_allow_list") {
        merged.realm_allow_list.clone_from(&update.realm_allow_list);
    }
    if has("protection") {
        merged.protection.clone_from(&update.protection);
    }
    Ok(merged)
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn create_registry(
        &self,
        request: Request<v1::CreateRegistryRequest>,
    ) -> Result<Response<v1::CreateRegistryResponse>, Status> {
        let request = request.into_inner();
        let given = request.registry.unwrap_or_default();
        let registry = validate(&given).map_err(ApiError::from)?;
        if request.validate_only {
            let exists = self.catalog.get_registry(&given.name).await.map_err(ApiError::from)?;
            if exists.is_some() {
                return Err(Status::already_exists(format!(
                    "registry {:?} already exists",
                    given.name
                )));
            }
            let registry = Some(v1::Registry {
                created_at: None,
                updated_at: None,
                capabilities: None,
                ..given
            });
            return Ok(Response::new(v1::CreateRegistryResponse { registry, sync_job_id: 0 }));
        }
        let name = registry.name.clone();
        let created = self.catalog.create_registry(registry).await.map_err(ApiError::from)?;
        let Some(created) = created else {
            return Err(Status::already_exists(format!("registry {name:?} already exists")));
        };
        tracing::info!(registry = %name, url = %created.url, "registry created");
        // Its capabilities and repositories are known as soon as a worker
        // reads them; a sync that cannot be enqueued now is asked for later
        // (`SyncRepositories`), the registry stands.
        let sync_job_id = match super::repositories::enqueue_sync(self.jobs.as_ref(), &name).await {
            Ok((job, _)) => job.id,
            Err(e) => {
                tracing::warn!(registry = %name, error = %e, "cannot enqueue the first catalog sync");
                0
            }
        };
        let registry = Some(created.to_proto());
        Ok(Response::new(v1::CreateRegistryResponse { registry, sync_job_id }))
    }

    async fn get_registry(
        &self,
        request: Request<v1::GetRegistryRequest>,
    ) -> Result<Response<v1::GetRegistryResponse>, Status> {
        let name = request.into_inner().name;
        let registry = self
            .catalog
            .get_registry(&name)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(&name))?;
        Ok(Response::new(v1::GetRegistryResponse { registry: Some(registry.to_proto()) }))
    }

    async fn list_registries(
        &self,
        _request: Request<v1::ListRegistriesRequest>,
    ) -> Result<Response<v1::ListRegistriesResponse>, Status> {
        let registries = self.catalog.list_registries().await.map_err(ApiError::from)?;
        Ok(Response::new(v1::ListRegistriesResponse {
            registries: registries.iter().map(RegistryRecord::to_proto).collect(),
        }))
    }

    async fn update_registry(
        &self,
        request: Request<v1::UpdateRegistryRequest>,
    ) -> Result<Response<v1::UpdateRegistryResponse>, Status> {
        let req = request.into_inner();
        let name = req.registry.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let Some(updated) = etag::retried(&req.etag, || self.update_once(&req)).await? else {
            let gone = self.catalog.get_registry(&name).await.map_err(ApiError::from)?;
            return Err(match gone {
                None => not_found(&name),
                Some(_) => etag::changed("registry", &name),
            }
            .into());
        };
        if !req.validate_only {
            tracing::info!(registry = %updated.name, "registry updated");
        }
        Ok(Response::new(v1::UpdateRegistryResponse { registry: Some(updated) }))
    }

    async fn mark_in_use(
        &self,
        request: Request<v1::MarkInUseRequest>,
    ) -> Result<Response<v1::MarkInUseResponse>, Status> {
        let answer = super::protection::mark(self.catalog.as_ref(), request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn get_protection(
        &self,
        request: Request<v1::GetProtectionRequest>,
    ) -> Result<Response<v1::GetProtectionResponse>, Status> {
        let answer = super::protection::get(self.catalog.as_ref(), request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn delete_registry(
        &self,
        request: Request<v1::DeleteRegistryRequest>,
    ) -> Result<Response<v1::DeleteRegistryResponse>, Status> {
        let name = request.into_inner().name;
        match self.catalog.delete_registry(&name).await.map_err(ApiError::from)? {
            DeleteRegistryOutcome::NotFound => Err(not_found(&name).into()),
            DeleteRegistryOutcome::InUse(policies) => Err(ApiError::FailedPrecondition(format!(
                "registry {name:?} is used by policies {}; delete them first",
                policies.join(", ")
            ))
            .into()),
            DeleteRegistryOutcome::Deleted => {
                tracing::info!(registry = %name, "registry deleted");
                Ok(Response::new(v1::DeleteRegistryResponse {}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(url: &str) -> v1::Registry {
        v1::Registry { name: "local".into(), url: url.into(), ..Default::default() }
    }

    fn fields(r: &v1::Registry) -> Vec<String> {
        validate(r).err().map(|v| v.fields().map(String::from).collect()).unwrap_or_default()
    }

    #[test]
    fn realm_allow_lists() {
        let mut r = registry("https://registry.internal");
        r.realm_allow_list =
            vec!["auth.internal".into(), "10.0.0.9:5001".into(), "[fd12::1]:443".into()];
        assert_eq!(validate(&r).expect("valid").realm_allow_list.len(), 3);
        for bad in
            ["", "http://auth", "auth/token", "user@auth", "Auth.Internal", "169.254.169.254"]
        {
            r.realm_allow_list = vec![bad.into()];
            assert_eq!(fields(&r), ["registry.realm_allow_list[0]"], "{bad}");
        }
        r.realm_allow_list = vec!["h".into(); 17];
        assert_eq!(fields(&r), ["registry.realm_allow_list"]);
    }

    #[test]
    fn urls() {
        assert!(fields(&registry("http://127.0.0.1:5000")).is_empty());
        assert!(fields(&registry("https://registry.example.com/")).is_empty());
        assert_eq!(validate(&registry("http://h:1/")).expect("valid").url, "http://h:1");
        for inside in ["http://127.0.0.1:5000", "https://10.0.0.8", "http://[fd12::1]:5000"] {
            assert!(
                validate(&registry(inside)).is_ok(),
                "{inside}: registries inside the network are fine"
            );
        }
        for bad in [
            "ftp://h",
            "not a url",
            "http://user:pw@h",
            "http://h/?q=1",
            "",
            "http://169.254.169.254/latest",
            "http://[fe80::1]:5000",
            "http://[fd00:ec2::254]",
            "http://[::ffff:169.254.1.1]",
            "http://metadata.google.internal.",
        ] {
            assert_eq!(fields(&registry(bad)), ["registry.url"], "{bad}");
        }
    }

    #[test]
    fn credentials_and_limits() {
        let mut r = registry("http://h");
        r.credentials = Some(v1::RegistryCredentials {
            username: "u".into(),
            password_file: "relative".into(),
            password_env: "BAD-NAME".into(),
            docker_config: "/c.json".into(),
        });
        r.rate_limit = -1.0;
        r.max_parallel_deletions = 5000;
        assert_eq!(
            fields(&r),
            [
                "registry.credentials.docker_config",
                "registry.credentials.password_env",
                "registry.credentials.password_env",
                "registry.credentials.password_file",
                "registry.rate_limit",
                "registry.max_parallel_deletions"
            ]
        );
        r.rate_limit = f64::NAN;
        r.credentials = Some(v1::RegistryCredentials {
            username: "u".into(),
            password_env: "REGISTRY_PASSWORD".into(),
            ..Default::default()
        });
        r.max_parallel_deletions = 8;
        assert_eq!(fields(&r), ["registry.rate_limit"]);
    }
}

//! What jobs reach besides their stream: the scheduler's unary APIs
//! (registry definitions, catalog reports) and registry clients built from
//! those definitions, with credentials resolved here, never sent anywhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regsweep_common::grpc::{self, GrpcError};
use regsweep_proto::v1::{
    self, registry_service_client::RegistryServiceClient,
    repository_service_client::RepositoryServiceClient,
};
use regsweep_registry::{Client, ClientConfig, CredentialRef};
use tonic::transport::Channel;

/// How long a registry definition (and the client built from it) is reused.
const REGISTRY_TTL: Duration = Duration::from_secs(30);
/// Deadline of the scheduler's unary rpcs.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a job could not reach what it needs.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("registry {0:?} is not defined")]
    UnknownRegistry(String),
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Registry(#[from] regsweep_registry::Error),
}

impl ServiceError {
    /// Whether retrying the job later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::UnknownRegistry(_) => false,
            Self::Scheduler(_) => true,
            Self::Registry(e) => e.is_retryable(),
        }
    }
}

pub struct Services {
    channel: Channel,
    clients: Mutex<HashMap<String, (Instant, Client)>>,
}

impl Services {
    /// A lazily dialed channel balanced over every scheduler URL.
    pub fn new(schedulers: &[String]) -> Result<Self, GrpcError> {
        let endpoints = schedulers
            .iter()
            .map(|url| grpc::endpoint(url).map(|e| e.timeout(RPC_TIMEOUT)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            channel: Channel::balance_list(endpoints.into_iter()),
            clients: Mutex::default(),
        })
    }

    pub fn repositories(&self) -> RepositoryServiceClient<Channel> {
        RepositoryServiceClient::new(self.channel.clone())
    }

    /// A client for registry `name`, from a definition at most
    /// [`REGISTRY_TTL`] old.
    pub async fn registry_client(&self, name: &str) -> Result<Client, ServiceError> {
        if let Some((at, client)) =
            self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name)
            && at.elapsed() < REGISTRY_TTL
        {
            return Ok(client.clone());
        }
        let registry = RegistryServiceClient::new(self.channel.clone())
            .get_registry(v1::GetRegistryRequest { name: name.to_string() })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => ServiceError::UnknownRegistry(name.to_string()),
                _ => ServiceError::Scheduler(status.message().to_string()),
            })?
            .into_inner()
            .registry
            .ok_or_else(|| ServiceError::Scheduler("empty GetRegistry answer".into()))?;
        let c = registry.credentials.unwrap_or_default();
        let reference = CredentialRef {
            username: c.username,
            password_file: c.password_file,
            password_env: c.password_env,
            docker_config: c.docker_config,
        };
        let credentials = reference.resolve(&registry.url)?;
        let mut config = ClientConfig::new(registry.url);
        config.credentials = credentials;
        let client = Client::new(config)?;
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), (Instant::now(), client.clone()));
        Ok(client)
    }
}

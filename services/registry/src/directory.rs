//! Registry definitions fetched from the scheduler (`GetRegistry`) and the
//! clients built from them, cached briefly. Credentials are resolved here,
//! in the process that talks to the registry: they never cross the wire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use regsweep_common::grpc;
use regsweep_proto::v1::{self, registry_service_client::RegistryServiceClient};
use tonic::transport::Channel;

use crate::{Client, ClientConfig, CredentialRef, Error, Gate};

/// How long a definition (and its client) is reused.
const TTL: Duration = Duration::from_secs(30);

/// Why a registry's client could not be had.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("registry {0:?} is not defined")]
    Unknown(String),
    #[error("scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Registry(#[from] Error),
}

impl DirectoryError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unknown(_) => false,
            Self::Scheduler(_) => true,
            Self::Registry(e) => e.is_retryable(),
        }
    }
}

/// Builds the gate of a registry's client from its definition.
pub type GateFactory = dyn Fn(&v1::Registry) -> Arc<dyn Gate> + Send + Sync;

struct Entry {
    at: Instant,
    client: Client,
    definition: v1::Registry,
}

pub struct Directory {
    channel: Channel,
    gates: Option<Box<GateFactory>>,
    audit: Option<Arc<dyn crate::Audit>>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Directory {
    pub fn new(channel: Channel) -> Self {
        Self { channel, gates: None, audit: None, entries: Mutex::default() }
    }

    /// Every client gets the gate `factory` builds for its registry.
    pub fn with_gates(mut self, factory: Box<GateFactory>) -> Self {
        self.gates = Some(factory);
        self
    }

    /// Every client records its destructive requests in `audit`.
    pub fn with_audit(mut self, audit: Arc<dyn crate::Audit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// A client for registry `name` and its definition, at most [`TTL`] old.
    pub async fn get(&self, name: &str) -> Result<(Client, v1::Registry), DirectoryError> {
        {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = entries.get(name).filter(|e| e.at.elapsed() < TTL) {
                return Ok((e.client.clone(), e.definition.clone()));
            }
        }
        let definition = RegistryServiceClient::new(grpc::client(self.channel.clone()))
            .get_registry(v1::GetRegistryRequest { name: name.to_string() })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => DirectoryError::Unknown(name.to_string()),
                _ => DirectoryError::Scheduler(status.message().to_string()),
            })?
            .into_inner()
            .registry
            .ok_or_else(|| DirectoryError::Scheduler("empty GetRegistry answer".into()))?;
        let c = definition.credentials.clone().unwrap_or_default();
        let reference = CredentialRef {
            username: c.username,
            password_file: c.password_file,
            password_env: c.password_env,
            docker_config: c.docker_config,
        };
        let mut config = ClientConfig::new(definition.url.clone());
        config.credentials = reference.resolve(&definition.url)?;
        config.realm_allow_list.clone_from(&definition.realm_allow_list);
        config.gate = self.gates.as_ref().map(|factory| factory(&definition));
        config.audit.clone_from(&self.audit);
        let client = Client::new(config)?;
        let entry =
            Entry { at: Instant::now(), client: client.clone(), definition: definition.clone() };
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(name.to_string(), entry);
        Ok((client, definition))
    }

    /// A client for registry `name`.
    pub async fn client(&self, name: &str) -> Result<Client, DirectoryError> {
        self.get(name).await.map(|(client, _)| client)
    }
}

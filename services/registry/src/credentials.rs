//! Credentials: references resolved by the process that talks to the
//! registry (a password file, an environment variable, or a Docker
//! `config.json`), and a secret type that never prints itself.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

/// A secret string: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the client authenticates with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: Secret,
    },
}

/// Where a credential comes from (all empty: anonymous). Never the secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialRef {
    pub username: String,
    pub password_file: String,
    pub password_env: String,
    pub docker_config: String,
}

/// Largest password file or Docker config read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

fn read_small(path: &str, what: &str) -> Result<String, Error> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::Credentials(format!("{what} {path}: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::Credentials(format!("{what} {path} is larger than 1 MiB")));
    }
    std::fs::read_to_string(path).map_err(|e| Error::Credentials(format!("{what} {path}: {e}")))
}

impl CredentialRef {
    /// Reads the credential for the registry at `registry_url`.
    pub fn resolve(&self, registry_url: &str) -> Result<Credentials, Error> {
        if !self.docker_config.is_empty() {
            return docker_config(&self.docker_config, registry_url);
        }
        if self.username.is_empty() {
            return Ok(Credentials::Anonymous);
        }
        let password = if !self.password_file.is_empty() {
            let text = read_small(&self.password_file, "password file")?;
            text.trim_end_matches(['\n', '\r']).to_string()
        } else if !self.password_env.is_empty() {
            std::env::var(&self.password_env).map_err(|_| {
                Error::Credentials(format!("environment variable {} is not set", self.password_env))
            })?
        } else {
            return Err(Error::Credentials("a username needs a password file or variable".into()));
        };
        Ok(Credentials::Basic { username: self.username.clone(), password: Secret::new(password) })
    }
}

/// The `auths` entry of a Docker config for the registry's host[:port].
fn docker_config(path: &str, registry_url: &str) -> Result<Credentials, Error> {
    let text = read_small(path, "docker config")?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Credentials(format!("docker config {path} is not JSON: {e}")))?;
    let url = url::Url::parse(registry_url).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    let host = url.host_str().unwrap_or_default();
    let host_port = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    // `https://h` is also written `h:443` (the URL parser drops default ports).
    let with_default =
        url.port_or_known_default().map_or_else(|| host.to_string(), |p| format!("{host}:{p}"));
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(Credentials::Anonymous);
    };
    // Keys may be `host:port`, `https://host:port`, `http://host:port/v2/`, ...
    let key_host = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or_default().to_string()
    };
    let Some(entry) = auths
        .iter()
        .find(|(key, _)| {
            let key = key_host(key);
            key == host_port || key == with_default
        })
        .map(|(_, v)| v)
    else {
        return Ok(Credentials::Anonymous);
    };
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    if !field("auth").is_empty() {
        let decoded = STANDARD
            .decode(field("auth").trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::Credentials(format!("docker config {path}: malformed auth for {host_port}"))
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            Error::Credentials(format!("docker config {path}: malformed auth for {host_port}"))
        })?;
        return Ok(Credentials::Basic {
            username: username.into(),
            password: Secret::new(password),
        });
    }
    if !field("username").is_empty() {
        return Ok(Credentials::Basic {
            username: field("username").into(),
            password: Secret::new(field("password")),
        });
    }
    Ok(Credentials::Anonymous)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials::Basic { username: user.into(), password: Secret::new(password) }
    }

    #[test]
    fn password_file_and_env() {
        let f = file("s3cret\n");
        let r = CredentialRef {
            username: "bob".into(),
            password_file: f.path().display().to_string(),
            ..Default::default()
        };
        assert_eq!(r.resolve("http://h").expect("resolves"), basic("bob", "s3cret"));
        let r = CredentialRef {
            username: "bob".into(),
            password_env: "REGSWEEP_TEST_NOPE_UNSET".into(),
            ..Default::default()
        };
        let e = r.resolve("http://h").expect_err("unset");
        assert!(e.to_string().contains("REGSWEEP_TEST_NOPE_UNSET"));
        assert_eq!(
            CredentialRef::default().resolve("http://h").expect("anonymous"),
            Credentials::Anonymous
        );
        assert!(!format!("{:?}", basic("bob", "s3cret")).contains("s3cret"));
    }

    #[test]
    fn docker_config_entries() {
        let auth = STANDARD.encode("alice:pw1");
        let f = file(&format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}, "https://other.example:443/v2/": {{"username": "carol", "password": "pw2"}}}}}}"#
        ));
        let r =
            CredentialRef { docker_config: f.path().display().to_string(), ..Default::default() };
        assert_eq!(r.resolve("http://127.0.0.1:5000").expect("entry"), basic("alice", "pw1"));
        assert_eq!(r.resolve("https://other.example:443").expect("entry"), basic("carol", "pw2"));
        assert_eq!(r.resolve("http://127.0.0.1:6000").expect("no entry"), Credentials::Anonymous);
        let bad = file(r#"{"auths": {"h:1": {"auth": "!!"}}}"#);
        let r =
            CredentialRef { docker_config: bad.path().display().to_string(), ..Default::default() };
        assert!(r.resolve("http://h:1").is_err());
    }
}

//! CNCF Distribution (`docker-registry`) as a test fixture: its own
//! temporary storage and port, deletes enabled, and seeding helpers written
//! with plain HTTP (not with the client under test).

use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest as _, Sha256};
use tokio::process::{Child, Command};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What an index says of each manifest it lists.
#[derive(Clone, Copy)]
enum Listed {
    /// Its platform (a multi-arch image).
    Platform,
    /// Its artifact type (a referrers index).
    Artifact,
}

/// A running registry, killed on drop.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    /// The process; replaced by `restart`.
    child: tokio::sync::Mutex<Child>,
    url: String,
    http: reqwest::Client,
}

fn digest_of(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs `docker-registry serve CONFIG` and waits until `/v2/` answers on
/// `url`; `None` when it exits first.
async fn serve(config_path: &std::path::Path, url: &str, http: &reqwest::Client) -> Option<Child> {
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "docker-registry is missing: run scripts/deps.sh (apt-get install docker-registry)"
            )
        }
        Err(e) => panic!("cannot start docker-registry: {e}"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(format!("{url}/v2/")).send().await
            && r.status().is_success()
        {
            return Some(child);
        }
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "docker-registry did not answer GET /v2/ on {url} within 10s (see its log above)"
        );
        // A readiness probe of an outside process: nothing to await.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestRegistry {
    /// Starts `docker-registry serve` and waits until `/v2/` answers.
    pub async fn start() -> Self {
        Self::launch(true).await
    }

    /// Starts one with `storage.delete.enabled: false`: it answers a
    /// manifest DELETE with 405 `UNSUPPORTED` and still takes PUTs.
    pub async fn start_without_deletes() -> Self {
        Self::launch(false).await
    }

    async fn launch(deletes: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = reqwest::Client::new();
        // The port is picked here and bound by the registry: a rare race
        // with another process is retried.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {deletes}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write registry config");
            let url = format!("http://127.0.0.1:{port}");
            // An exit before answering is most likely the port taken in
            // between: try another one.
            if let Some(child) = serve(&config_path, &url, &http).await {
                return Self { dir, child: tokio::sync::Mutex::new(child), url, http };
            }
        }
        panic!("docker-registry exited before answering, five times (see its log above)");
    }

    /// Kills the registry process and starts it again on the same port and
    /// storage, as an operator's restart (or a crash and its supervisor)
    /// does; returns once it answers again.
    pub async fn restart(&self) {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        let config_path = self.dir.path().join("config.yml");
        // The port was just released; a listener in TIME_WAIT rebinding
        // is allowed (Go sets SO_REUSEADDR), so one try is enough.
        *child = serve(&config_path, &self.url, &self.http)
            .await
            .expect("docker-registry restarts on its port");
    }

    /// Returns once no `restart` is under way. A restart holds the process
    /// from before its kill until the new one answers, so a request that
    /// failed because of it can be sent again after this.
    pub async fn restarted(&self) {
        drop(self.child.lock().await);
    }

    /// The tags of `repo`, as the registry lists them.
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let response = self
            .http
            .get(format!("{}/v2/{repo}/tags/list", self.url))
            .send()
            .await
            .expect("list tags");
        if response.status() == 404 {
            return Vec::new();
        }
        let body: serde_json::Value = response.json().await.expect("tag list");
        body["tags"]
            .as_array()
            .map(|tags| tags.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Whether `repo:tag` is on one of regsweep's untag placeholders.
    pub async fn on_placeholder(&self, repo: &str, tag: &str) -> bool {
        let response = self
            .http
            .get(format!("{}/v2/{repo}/manifests/{tag}", self.url))
            .header("accept", ACCEPT)
            .send()
            .await
            .expect("get manifest");
        if !response.status().is_success() {
            return false;
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        body["annotations"].get("io.regsweep.placeholder").is_some()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    async fn upload_blob(&self, repo: &str, body: &[u8]) -> String {
        self.try_upload_blob(repo, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_upload_blob(&self, repo: &str, body: &[u8]) -> Result<String, String> {
        let digest = digest_of(body);
        let started = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.url))
            .send()
            .await
            .map_err(|e| format!("start upload: {e}"))?;
        if started.status() != 202 {
            return Err(format!("start upload: {}", started.status()));
        }
        let location = started
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or("start upload: no location")?
            .to_string();
        let location =
            if location.starts_with("http") { location } else { format!("{}{location}", self.url) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{location}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("put blob: {e}"))?;
        if put.status() != 201 {
            return Err(format!("put blob: {}", put.status()));
        }
        Ok(digest)
    }

    /// Puts a manifest under each of `tags` (by digest only, untagged,
    /// when there are none); returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        body: &[u8],
    ) -> String {
        self.try_put_manifest(repo, tags, media_type, body).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_put_manifest(
        &self,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        body: &[u8],
    ) -> Result<String, String> {
        let digest = digest_of(body);
        let by_digest = [digest.as_str()];
        let references = if tags.is_empty() { &by_digest[..] } else { tags };
        for tag in references {
            let response = self
                .http
                .put(format!("{}/v2/{repo}/manifests/{tag}", self.url))
                .header("content-type", media_type)
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| format!("put manifest {repo}:{tag}: {e}"))?;
            if response.status() != 201 {
                return Err(format!("put manifest {repo}:{tag}: {}", response.status()));
            }
        }
        Ok(digest)
    }

    /// Leaves `tag` on a placeholder manifest as regsweep's untag puts it
    /// there, as a scrubber killed between that PUT and the placeholder's
    /// DELETE leaves it; returns the placeholder's digest.
    pub async fn put_placeholder(&self, repo: &str, tag: &str) -> String {
        let config = self.upload_blob(repo, b"{}").await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [],
            "annotations": {"io.regsweep.placeholder": format!("{repo}:{tag}:interrupted")},
        }))
        .expect("placeholder json");
        self.put_manifest(repo, &[tag], OCI_MANIFEST, &manifest).await
    }

    /// Points `tag` at the manifest `digest` if the registry still has it
    /// (and takes it again); false when either fails.
    pub async fn try_tag(&self, repo: &str, tag: &str, digest: &str) -> bool {
        let url = format!("{}/v2/{repo}/manifests/{digest}", self.url);
        let Ok(response) = self.http.get(url).header("accept", ACCEPT).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Some(media_type) = response.headers().get("content-type").cloned() else {
            return false;
        };
        let Ok(body) = response.bytes().await else { return false };
        let put = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{tag}", self.url))
            .header("content-type", media_type)
            .body(body)
            .send()
            .await;
        put.is_ok_and(|r| r.status().is_success())
    }

    /// Points `tag` at the existing manifest `digest`.
    pub async fn tag(&self, repo: &str, tag: &str, digest: &str) {
        assert!(self.try_tag(repo, tag, digest).await, "cannot tag {repo}@{digest} as {tag}");
    }

    /// Pushes an untagged OCI index over `children`, made unique by
    /// `unique`; returns its digest.
    pub async fn push_index_untagged(
        &self,
        repo: &str,
        children: &[(&str, &str)],
        unique: &str,
    ) -> String {
        let annotations = serde_json::json!({"test.unique": unique});
        self.push_listing(repo, &[], OCI_INDEX, children, Listed::Platform, annotations).await
    }

    /// Pushes an index of `media_type` over `children` (digest and
    /// architecture or artifact type) under `tags`; returns its digest.
    async fn push_listing(
        &self,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        children: &[(&str, &str)],
        listed: Listed,
        annotations: serde_json::Value,
    ) -> String {
        let mut manifests = Vec::new();
        for (digest, detail) in children {
            let (child_type, size) = self.descriptor(repo, digest).await;
            let mut child =
                serde_json::json!({"mediaType": child_type, "digest": digest, "size": size});
            match listed {
                Listed::Platform => {
                    child["platform"] = serde_json::json!({"os": "linux", "architecture": detail});
                }
                Listed::Artifact => child["artifactType"] = (*detail).into(),
            }
            manifests.push(child);
        }
        let mut index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": manifests,
        });
        if annotations.as_object().is_some_and(|a| !a.is_empty()) {
            index["annotations"] = annotations;
        }
        let index = serde_json::to_vec(&index).expect("index json");
        self.put_manifest(repo, tags, media_type, &index).await
    }

    /// Every manifest `repo` still stores, by digest (from its storage:
    /// the registry has no API that lists untagged manifests).
    pub fn manifests(&self, repo: &str) -> std::collections::BTreeSet<String> {
        let dir = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/revisions/sha256");
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().join("link").exists())
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn manifest(
        config_digest: &str,
        config_size: usize,
        annotations: serde_json::Value,
    ) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [],
            "annotations": annotations,
        }))
        .expect("manifest json")
    }

    /// Pushes an image (a config holding `created` and `unique`, no layers)
    /// under every tag of `tags`; returns its digest.
    pub async fn push_image(
        &self,
        repo: &str,
        tags: &[&str],
        created: Option<DateTime<Utc>>,
        unique: &str,
    ) -> String {
        self.try_push_image(repo, tags, created, unique).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `push_image`, answering a failed request (a registry restarting
    /// under it) with an error instead of a panic. Every request it sends
    /// is idempotent: sending it all again finishes a push cut short.
    pub async fn try_push_image(
        &self,
        repo: &str,
        tags: &[&str],
        created: Option<DateTime<Utc>>,
        unique: &str,
    ) -> Result<String, String> {
        let mut config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "unique": unique,
        });
        if let Some(created) = created {
            config["created"] = created.to_rfc3339_opts(SecondsFormat::Secs, true).into();
        }
        let config = serde_json::to_vec(&config).expect("config json");
        let config_digest = self.try_upload_blob(repo, &config).await?;
        let manifest = Self::manifest(&config_digest, config.len(), serde_json::json!({}));
        self.try_put_manifest(repo, tags, OCI_MANIFEST, &manifest).await
    }

    /// Pushes an image of `layers` (their bytes, uploaded as blobs) under
    /// `tags` (untagged when none); returns its digest and the bytes of its
    /// config and layers.
    pub async fn push_layered_image(
        &self,
        repo: &str,
        tags: &[&str],
        created: DateTime<Utc>,
        unique: &str,
        layers: &[&[u8]],
    ) -> (String, u64) {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": created.to_rfc3339_opts(SecondsFormat::Secs, true),
            "unique": unique,
        }))
        .expect("config json");
        let config_digest = self.upload_blob(repo, &config).await;
        let mut descriptors = Vec::new();
        for layer in layers {
            let digest = self.upload_blob(repo, layer).await;
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": layer.len(),
            }));
        }
        let mut manifest: serde_json::Value = serde_json::from_slice(&Self::manifest(
            &config_digest,
            config.len(),
            serde_json::json!({}),
        ))
        .expect("manifest json");
        manifest["layers"] = descriptors.into();
        let body = serde_json::to_vec(&manifest).expect("manifest json");
        let digest = self.put_manifest(repo, tags, OCI_MANIFEST, &body).await;
        let bytes = config.len() + layers.iter().map(|l| l.len()).sum::<usize>();
        (digest, bytes as u64)
    }

    /// Pushes an image whose config has no `created`, with the creation
    /// time only as the manifest annotation.
    pub async fn push_image_annotated(
        &self,
        repo: &str,
        tag: &str,
        created: DateTime<Utc>,
    ) -> String {
        let config =
            serde_json::to_vec(&serde_json::json!({"os": "linux", "unique": tag})).expect("config");
        let config_digest = self.upload_blob(repo, &config).await;
        let annotations = serde_json::json!({
            "org.opencontainers.image.created": created.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        let manifest = Self::manifest(&config_digest, config.len(), annotations);
        self.put_manifest(repo, &[tag], OCI_MANIFEST, &manifest).await
    }

    /// Pushes an OCI index over `children` (linux/amd64 first) under `tag`.
    pub async fn push_index(&self, repo: &str, tag: &str, children: &[(&str, &str)]) -> String {
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|(digest, arch)| {
                serde_json::json!({
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": arch},
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
        .expect("index json");
        self.put_manifest(repo, &[tag], OCI_INDEX, &index).await
    }

    /// Pushes a Docker image (schema 2, with `created` in its config)
    /// under `tags`; returns its digest.
    pub async fn push_docker_image(
        &self,
        repo: &str,
        tags: &[&str],
        created: Option<DateTime<Utc>>,
        unique: &str,
    ) -> String {
        let mut config =
            serde_json::json!({"architecture": "arm64", "os": "linux", "unique": unique});
        if let Some(created) = created {
            config["created"] = created.to_rfc3339_opts(SecondsFormat::Secs, true).into();
        }
        let config = serde_json::to_vec(&config).expect("config json");
        let config_digest = self.upload_blob(repo, &config).await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [],
        }))
        .expect("manifest json");
        self.put_manifest(repo, tags, DOCKER_MANIFEST, &manifest).await
    }

    /// Pushes a Docker manifest list over `children` under `tag`.
    pub async fn push_list(&self, repo: &str, tag: &str, children: &[(&str, &str)]) -> String {
        let none = serde_json::json!({});
        self.push_listing(repo, &[tag], DOCKER_LIST, children, Listed::Platform, none).await
    }

    /// Pushes a cosign-style signature of `subject` under its tag
    /// `sha256-<hex>.sig`; returns the signature's digest.
    pub async fn push_cosign_signature(&self, repo: &str, subject: &str) -> String {
        let payload =
            format!("{{\"critical\":{{\"image\":{{\"docker-manifest-digest\":\"{subject}\"}}}}}}");
        let layer = self.upload_blob(repo, payload.as_bytes()).await;
        let config = self.upload_blob(repo, b"{}").await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": layer,
                "size": payload.len(),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
            }],
        }))
        .expect("signature json");
        let tag = format!("{}.sig", subject.replace(':', "-"));
        self.put_manifest(repo, &[&tag], OCI_MANIFEST, &manifest).await
    }

    /// Pushes an OCI 1.1 artifact (an SBOM, a signature) whose `subject`
    /// is `subject`, by digest only (untagged), as clients do where the
    /// registry has no referrers API; returns its digest.
    pub async fn push_artifact(&self, repo: &str, subject: &str, artifact_type: &str) -> String {
        let (subject_type, subject_size) = self.descriptor(repo, subject).await;
        let content = format!("{artifact_type} of {subject}");
        let layer = self.upload_blob(repo, content.as_bytes()).await;
        let empty = self.upload_blob(repo, b"{}").await;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": layer, "size": content.len()}],
            "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size},
        }))
        .expect("artifact json");
        let digest = digest_of(&manifest);
        self.put_manifest(repo, &[&digest], OCI_MANIFEST, &manifest).await
    }

    /// Pushes the referrers fallback index of `subject` (tag
    /// `sha256-<hex>`) listing `artifacts`; returns its digest.
    pub async fn push_referrers_index(
        &self,
        repo: &str,
        subject: &str,
        artifacts: &[(&str, &str)],
    ) -> String {
        let tag = subject.replace(':', "-");
        let none = serde_json::json!({});
        self.push_listing(repo, &[&tag], OCI_INDEX, artifacts, Listed::Artifact, none).await
    }

    /// A HEAD of a manifest with every manifest type accepted.
    async fn head(&self, repo: &str, reference: &str) -> reqwest::Response {
        self.http
            .head(format!("{}/v2/{repo}/manifests/{reference}", self.url))
            .header("accept", ACCEPT)
            .send()
            .await
            .expect("head manifest")
    }

    /// The media type and size of a manifest, by HEAD.
    async fn descriptor(&self, repo: &str, reference: &str) -> (String, u64) {
        let response = self.head(repo, reference).await;
        assert!(response.status().is_success(), "head {repo}@{reference}: {}", response.status());
        let media_type = response.headers()["content-type"].to_str().expect("type").to_string();
        (media_type, response.content_length().unwrap_or_default())
    }

    /// Whether the manifest `digest` is still in `repo`.
    pub async fn has_manifest(&self, repo: &str, digest: &str) -> bool {
        self.head(repo, digest).await.status().is_success()
    }

    /// Whether `tag` pulls: its manifest resolves, and so does every
    /// manifest an index lists, at any depth. Says what is missing if not.
    pub async fn pull(&self, repo: &str, tag: &str) -> Result<(), String> {
        let mut pending = vec![tag.to_string()];
        while let Some(reference) = pending.pop() {
            let response = self
                .http
                .get(format!("{}/v2/{repo}/manifests/{reference}", self.url))
                .header("accept", ACCEPT)
                .send()
                .await
                .expect("get manifest");
            if !response.status().is_success() {
                return Err(format!("{repo}:{tag} needs {reference}: {}", response.status()));
            }
            let body: serde_json::Value = response.json().await.expect("manifest json");
            for child in body["manifests"].as_array().into_iter().flatten() {
                pending.push(child["digest"].as_str().expect("child digest").to_string());
            }
        }
        Ok(())
    }

    /// The digest `tag` points at, or `None` when it does not exist.
    pub async fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let response = self.head(repo, tag).await;
        if response.status() == 404 {
            return None;
        }
        assert!(response.status().is_success(), "head {repo}:{tag}: {}", response.status());
        Some(response.headers()["docker-content-digest"].to_str().expect("digest").to_string())
    }

    /// Manifests the registry still stores for `repo` (its revision links):
    /// deleted manifests, placeholders included, are not among them.
    pub fn manifest_count(&self, repo: &str) -> usize {
        let dir = self
            .dir
            .path()
            .join("data/docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/revisions/sha256");
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().filter(|e| e.path().join("link").exists()).count())
            .unwrap_or(0)
    }

    /// Deletes a manifest by digest (every tag of it goes).
    pub async fn delete(&self, repo: &str, digest: &str) {
        let response = self
            .http
            .delete(format!("{}/v2/{repo}/manifests/{digest}", self.url))
            .send()
            .await
            .expect("delete manifest");
        assert_eq!(response.status(), 202, "delete {repo}@{digest}");
    }
}

//! The OCI client against the real registry (CNCF Distribution), and
//! through a proxy that adds Basic and Bearer auth and rate limiting.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use regsweep_integration_tests::TestRegistry;
use regsweep_integration_tests::authproxy::{AuthProxy, Mode};
use regsweep_registry::{Client, ClientConfig, Credentials, DeleteOutcome, Error, Secret};

fn client(url: &str) -> Client {
    Client::new(ClientConfig::new(url)).expect("client")
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_pages_follow_link_headers() {
    let registry = TestRegistry::start().await;
    let mut expected = Vec::new();
    for i in 0..25 {
        let repo = format!("r{i:02}");
        registry.push_image(&repo, &["v1"], None, &repo).await;
        expected.push(repo);
    }
    let client = client(&registry.url());
    let (mut names, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let (page, next) = client.catalog_page(10, cursor.as_deref()).await.expect("catalog page");
        assert!(page.len() <= 10);
        names.extend(page);
        pages += 1;
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(names, expected);
    assert_eq!(pages, 3);
    // Distribution refuses pages above 1000 (400 PAGINATION_NUMBER_INVALID)
    // and answers an empty page to `n=0`: the client asks within bounds.
    let (all, next) = client.catalog_page(5000, None).await.expect("large page");
    assert_eq!((all, next), (expected.clone(), None));
    let (first, next) = client.catalog_page(0, None).await.expect("empty page");
    assert_eq!(first, vec![expected[0].clone()]);
    // The cursor is the registry's whole next link, followed as given.
    let next = next.expect("a next page");
    assert!(next.starts_with(&registry.url()) && next.contains("last=r00"), "{next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_listed_completely_and_unknown_repositories_are_not_found() {
    let registry = TestRegistry::start().await;
    let tags: Vec<String> = (0..150).map(|i| format!("t{i:03}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    registry.push_image("many", &refs, None, "many").await;
    let mut config = ClientConfig::new(registry.url());
    config.tags_page_size = 40;
    let client = Client::new(config).expect("client");
    // Distribution 2.8 ignores `n` and answers every tag, in storage order.
    let mut listed = client.list_tags("many").await.expect("tags");
    listed.sort();
    assert_eq!(listed, tags);

    // A repository whose only manifest was deleted has no tags.
    let digest = registry.push_image("empty", &["gone"], None, "empty").await;
    registry.delete("empty", &digest).await;
    assert_eq!(client.list_tags("empty").await.expect("empty repository"), Vec::<String>::new());
    assert!(matches!(client.list_tags("nope").await, Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_resolve_to_digests_and_creation_times() {
    let registry = TestRegistry::start().await;
    let created = at("2026-03-01T12:00:00Z");
    let digest = registry.push_image("app", &["v1", "also"], Some(created), "a").await;
    let annotated_at = at("2025-12-24T00:00:00Z");
    let annotated = registry.push_image_annotated("app", "annotated", annotated_at).await;
    let unknown = registry.push_image("app", &["unknown"], None, "u").await;
    let arm = registry.push_image("app", &["arm"], Some(at("2020-01-01T00:00:00Z")), "arm").await;
    let index = registry.push_index("app", "multi", &[(&arm, "arm64"), (&digest, "amd64")]).await;
    let client = client(&registry.url());

    let resolved = client.resolve("app", "v1").await.expect("resolve").expect("exists");
    assert_eq!(resolved.digest, digest);
    assert!(client.resolve("app", "missing").await.expect("resolve").is_none());

    let info = |tag: &'static str| {
        let client = client.clone();
        async move { client.inspect_tag("app", tag).await.expect("inspect").expect("exists") }
    };
    assert_eq!(info("v1").await.created, Some(created));
    assert_eq!(info("annotated").await.digest, annotated);
    assert_eq!(info("annotated").await.created, Some(annotated_at));
    assert_eq!(info("unknown").await.digest, unknown);
    assert_eq!(info("unknown").await.created, None);
    // An index stands for its linux/amd64 child.
    let multi = info("multi").await;
    assert_eq!((multi.digest.as_str(), multi.created), (index.as_str(), Some(created)));
    assert!(client.inspect_tag("app", "missing").await.expect("inspect").is_none());
    assert_eq!(
        created.to_rfc3339_opts(SecondsFormat::Secs, true),
        "2026-03-01T12:00:00Z",
        "seeded time round-trips"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_by_digest_removes_every_tag_and_repeats_are_not_found() {
    let registry = TestRegistry::start().await;
    let shared = registry.push_image("app", &["a", "b"], None, "shared").await;
    registry.push_image("app", &["c"], None, "other").await;
    let client = client(&registry.url());
    assert_eq!(
        client.delete_manifest("app", &shared).await.expect("delete"),
        DeleteOutcome::Deleted
    );
    assert!(registry.tag_digest("app", "a").await.is_none());
    assert!(registry.tag_digest("app", "b").await.is_none());
    assert!(registry.tag_digest("app", "c").await.is_some());
    assert_eq!(
        client.delete_manifest("app", &shared).await.expect("delete"),
        DeleteOutcome::NotFound
    );
    // Deleting by tag is refused before any request.
    assert!(matches!(client.delete_manifest("app", "c").await, Err(Error::InvalidReference(_))));
    assert!(registry.tag_digest("app", "c").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_and_manifest_puts_round_trip() {
    let registry = TestRegistry::start().await;
    let client = client(&registry.url());
    let config = br#"{"os":"linux"}"#.to_vec();
    let config_digest = client.upload_blob("pushed", config.clone()).await.expect("upload");
    // Uploading it again is a no-op (the blob exists).
    assert_eq!(client.upload_blob("pushed", config.clone()).await.expect("again"), config_digest);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [],
    }))
    .expect("json");
    let digest = client
        .put_manifest("pushed", "v1", "application/vnd.oci.image.manifest.v1+json", manifest)
        .await
        .expect("put");
    assert_eq!(registry.tag_digest("pushed", "v1").await.as_deref(), Some(digest.as_str()));
}

fn basic(username: &str, password: &str) -> Credentials {
    Credentials::Basic { username: username.into(), password: Secret::new(password) }
}

fn with_credentials(url: &str, credentials: Credentials) -> Client {
    let mut config = ClientConfig::new(url);
    config.credentials = credentials;
    Client::new(config).expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_challenges_are_answered() {
    let registry = TestRegistry::start().await;
    registry.push_image("app", &["v1"], None, "a").await;
    let mode = Mode::Basic { username: "alice".into(), password: "pw-basic".into() };
    let proxy = AuthProxy::start(&registry.url(), mode).await;
    let good = with_credentials(&proxy.url(), basic("alice", "pw-basic"));
    assert_eq!(good.list_tags("app").await.expect("tags"), ["v1"]);
    let wrong = with_credentials(&proxy.url(), basic("alice", "nope"));
    let error = wrong.list_tags("app").await.expect_err("refused");
    assert!(matches!(error, Error::Unauthorized(_)), "{error}");
    assert!(!error.to_string().contains("nope"));
    let anonymous = client(&proxy.url());
    assert!(matches!(anonymous.list_tags("app").await, Err(Error::Unauthorized(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_for_the_challenged_scope() {
    let registry = TestRegistry::start().await;
    registry.push_image("team/app", &["v1"], None, "a").await;
    let mode = Mode::Bearer { username: "bob".into(), password: "pw-bearer".into() };
    let proxy = AuthProxy::start(&registry.url(), mode).await;
    let good = with_credentials(&proxy.url(), basic("bob", "pw-bearer"));
    assert_eq!(good.list_tags("team/app").await.expect("tags"), ["v1"]);
    // The token is cached: a second call needs no new token.
    assert_eq!(good.list_tags("team/app").await.expect("tags"), ["v1"]);
    assert_eq!(
        proxy.token_requests(),
        [("regsweep-test".to_string(), "repository:team/app:pull".to_string())]
    );
    let wrong = with_credentials(&proxy.url(), basic("bob", "wrong"));
    let error = wrong.list_tags("team/app").await.expect_err("refused");
    assert!(matches!(error, Error::Unauthorized(_)), "{error}");
    assert!(!error.to_string().contains("wrong"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_are_waited_out_until_retries_run_out() {
    let registry = TestRegistry::start().await;
    registry.push_image("app", &["v1"], None, "a").await;
    for status in [429, 503] {
        let proxy = AuthProxy::start(&registry.url(), Mode::Throttle { count: 2, status }).await;
        let started = std::time::Instant::now();
        assert_eq!(client(&proxy.url()).list_tags("app").await.expect("tags"), ["v1"]);
        assert_eq!(proxy.requests(), 3, "two refusals then success");
        // Retry-After: 1 was honoured twice (a lower bound, not a timing assert
        // on speed).
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
    let proxy = AuthProxy::start(&registry.url(), Mode::Throttle { count: 10, status: 429 }).await;
    let mut config = ClientConfig::new(proxy.url());
    config.max_retries = 2;
    config.max_retry_wait = Duration::from_millis(10);
    let error = Client::new(config).expect("client").list_tags("app").await.expect_err("gives up");
    assert!(matches!(error, Error::RateLimited { retries: 2 }), "{error}");
    assert_eq!(proxy.requests(), 3);
}

/// A listener that only counts who connects to it.
async fn decoy() -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind decoy");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (format!("127.0.0.1:{port}"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_realms_inside_the_network_or_over_plain_http_get_nothing() {
    let registry = TestRegistry::start().await;
    registry.push_image("app", &["v1"], None, "a").await;
    let (decoy_addr, seen) = decoy().await;
    let decoy_port = decoy_addr.rsplit(':').next().expect("port").to_string();
    for realm in [
        // Another local port, plain http: not the registry's origin.
        format!("http://{decoy_addr}/token"),
        // https, but to loopback by name: refused when connecting.
        format!("https://localhost:{decoy_port}/token"),
        // https to an internal address literal.
        format!("https://{decoy_addr}/token"),
        // The cloud metadata endpoint.
        "https://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let proxy =
            AuthProxy::start(&registry.url(), Mode::BearerRealm { realm: realm.clone() }).await;
        let client = with_credentials(&proxy.url(), basic("alice", "pw-realm"));
        let error = client.list_tags("app").await.expect_err("realm refused");
        assert!(matches!(error, Error::Unauthorized(_)), "{realm}: {error}");
        let text = error.to_string();
        assert!(text.contains("refusing bearer realm"), "{realm}: {text}");
        assert!(!text.contains("pw-realm"));
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0, "a refused realm was contacted");
}

#[tokio::test(flavor = "multi_thread")]
async fn realms_on_the_allow_list_are_followed_inside_the_network() {
    let registry = TestRegistry::start().await;
    registry.push_image("app", &["v1"], None, "a").await;
    // A token server on another local port, over plain http: refused
    // unless the registry allow-lists it.
    let mode = Mode::Bearer { username: "alice".into(), password: "pw-allowed".into() };
    let auth = AuthProxy::start(&registry.url(), mode).await;
    let auth_host = auth.url().trim_start_matches("http://").to_string();
    let realm = format!("{}/token", auth.url());
    let front = AuthProxy::start(&registry.url(), Mode::BearerRealm { realm }).await;
    let client = |allow: Vec<String>| {
        let mut config = ClientConfig::new(front.url());
        config.credentials = basic("alice", "pw-allowed");
        config.realm_allow_list = allow;
        Client::new(config).expect("client")
    };
    let other_port = format!("127.0.0.1:{}", registry.url().rsplit(':').next().expect("port"));
    for refusing in [vec![], vec![other_port], vec!["auth.example.com".to_string()]] {
        let error = client(refusing.clone()).list_tags("app").await.expect_err("refused");
        assert!(error.to_string().contains("refusing bearer realm"), "{refusing:?}: {error}");
    }
    assert!(auth.token_requests().is_empty(), "a refused realm was asked for a token");

    // Allow-listed: the credentials go there and a token comes back (the
    // front proxy then refuses every token: it only names the realm).
    let error = client(vec![auth_host]).list_tags("app").await.expect_err("front refuses");
    assert!(!error.to_string().contains("refusing bearer realm"), "{error}");
    assert!(!auth.token_requests().is_empty(), "the allow-listed realm was asked for a token");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_are_followed_through_link_pages() {
    let registry = TestRegistry::start().await;
    let tags: Vec<String> = (0..150).map(|i| format!("t{i:03}")).collect();
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    registry.push_image("paged", &refs, None, "paged").await;
    let proxy = AuthProxy::start(&registry.url(), Mode::PageTags).await;
    let mut config = ClientConfig::new(proxy.url());
    config.tags_page_size = 40;
    let client = Client::new(config).expect("client");
    assert_eq!(client.list_tags("paged").await.expect("tags"), tags);
    assert_eq!(proxy.requests(), 4, "pages of 40, 40, 40 and 30, and no more");
}

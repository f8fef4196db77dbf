//! A reverse proxy in front of the real registry that plays the parts a
//! production registry adds: Basic auth, Bearer token auth with its own
//! token endpoint, and rate limiting (429/503 with `Retry-After`). It
//! counts what it sees so tests can assert on it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use tokio::net::TcpListener;

/// What the proxy demands before forwarding.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `WWW-Authenticate: Basic` unless the right credentials come.
    Basic { username: String, password: String },
    /// `WWW-Authenticate: Bearer` pointing at the proxy's `/token`, which
    /// wants these credentials.
    Bearer { username: String, password: String },
    /// `WWW-Authenticate: Bearer` naming `realm` (wherever it is); nothing
    /// is ever forwarded.
    BearerRealm { realm: String },
    /// The first `count` requests get `status` with `Retry-After: 1`.
    Throttle { count: u32, status: u16 },
    /// Tag lists come in sorted pages of the `n` asked for, after `last`,
    /// with a relative `Link` to the next page: Distribution 2.8 ignores
    /// both parameters and answers every tag at once. Everything passes.
    PageTags,
    /// Every DELETE waits this long before it is forwarded, so deletions
    /// in flight overlap visibly; everything passes.
    SlowDeletes { millis: u64 },
    /// A faulty registry, by request number: every 5th answers 429 with
    /// `Retry-After: 1`, every 7th 503, every 11th is 1.5 s slow, every
    /// 13th has its connection cut mid-response; the rest pass.
    Faults,
}

const TOKEN: &str = "test-token-7f3a";

struct Shared {
    upstream: String,
    mode: Mode,
    http: reqwest::Client,
    url: String,
    requests: AtomicU32,
    token_requests: Mutex<Vec<(String, String)>>,
    deletes_in_flight: AtomicU32,
    max_deletes_in_flight: AtomicU32,
    /// Paths with a DELETE in flight, and how often a second DELETE of a
    /// path arrived while one was.
    deleting_paths: Mutex<Vec<String>>,
    overlapping_deletes: AtomicU32,
    /// Every manifest DELETE and PUT forwarded: (method, path).
    destructive: Mutex<Vec<(String, String)>>,
    /// When each forwarded request arrived, since the proxy started.
    arrivals: Mutex<Vec<std::time::Duration>>,
    /// Every request forwarded: (method, path).
    forwarded: Mutex<Vec<(String, String)>>,
    started: std::time::Instant,
}

/// A running proxy; stops when dropped.
pub struct AuthProxy {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn basic_ok(headers: &HeaderMap, username: &str, password: &str) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    );
    headers.get("authorization").and_then(|h| h.to_str().ok()) == Some(expected.as_str())
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let get =
        |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    shared.token_requests.lock().expect("token log").push((get("service"), get("scope")));
    let Mode::Bearer { username, password } = &shared.mode else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !basic_ok(&headers, username, password) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = serde_json::json!({"token": TOKEN, "expires_in": 300}).to_string();
    ([("content-type", "application/json")], body).into_response()
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let n = shared.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let denied = |challenge: String| {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response
            .headers_mut()
            .insert("www-authenticate", HeaderValue::from_str(&challenge).expect("header"));
        response
    };
    match &shared.mode {
        Mode::Basic { username, password } if !basic_ok(&parts.headers, username, password) => {
            return denied(r#"Basic realm="regsweep-test""#.to_string());
        }
        Mode::Bearer { .. } => {
            let bearer = format!("Bearer {TOKEN}");
            if parts.headers.get("authorization").and_then(|h| h.to_str().ok())
                != Some(bearer.as_str())
            {
                let path = parts.uri.path();
                let scope = path
                    .strip_prefix("/v2/")
                    .and_then(|p| {
                        p.split_once("/tags/")
                            .or_else(|| p.split_once("/manifests/"))
                            .or_else(|| p.split_once("/blobs/"))
                    })
                    .map_or_else(
                        || "registry:catalog:*".to_string(),
                        |(repo, _)| format!("repository:{repo}:pull"),
                    );
                return denied(format!(
                    r#"Bearer realm="{}/token",service="regsweep-test",scope="{scope}""#,
                    shared.url
                ));
            }
        }
        Mode::Faults if n % 5 == 1 => {
            let mut response = StatusCode::TOO_MANY_REQUESTS.into_response();
            response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return response;
        }
        Mode::Faults if n % 7 == 3 => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Faults if n % 11 == 5 => {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        Mode::Faults if n % 13 == 7 => {
            // Headers go out, then the body fails: the connection is cut.
            let broken = futures::stream::iter([
                Ok::<_, std::io::Error>(Bytes::from_static(b"{")),
                Err(std::io::Error::other("connection cut")),
            ]);
            return Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from_stream(broken))
                .expect("response");
        }
        Mode::BearerRealm { realm } => {
            return denied(format!(r#"Bearer realm="{realm}",service="regsweep-test",scope="x""#));
        }
        Mode::Throttle { count, status } if n < *count => {
            let mut response = StatusCode::from_u16(*status).expect("status").into_response();
            response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return response;
        }
        _ => {}
    }
    shared.arrivals.lock().expect("arrivals").push(shared.started.elapsed());
    let request = (parts.method.to_string(), parts.uri.path().to_string());
    let writes = [axum::http::Method::DELETE, axum::http::Method::PUT];
    if writes.contains(&parts.method) && parts.uri.path().contains("/manifests/") {
        shared.destructive.lock().expect("destructive").push(request.clone());
    }
    shared.forwarded.lock().expect("forwarded").push(request);
    let _guard = (parts.method == axum::http::Method::DELETE).then(|| {
        let now = shared.deletes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_deletes_in_flight.fetch_max(now, Ordering::SeqCst);
        let path = parts.uri.path().to_string();
        let mut paths = shared.deleting_paths.lock().expect("paths");
        if paths.contains(&path) {
            shared.overlapping_deletes.fetch_add(1, Ordering::SeqCst);
        }
        paths.push(path.clone());
        DeleteGuard { shared: shared.clone(), path }
    });
    if let (Some(_), Mode::SlowDeletes { millis }) = (&_guard, &shared.mode) {
        tokio::time::sleep(std::time::Duration::from_millis(*millis)).await;
    }
    if matches!(shared.mode, Mode::PageTags) && parts.uri.path().ends_with("/tags/list") {
        let path = parts.uri.path().to_string();
        let query = reqwest::Url::parse(&format!("http://proxy{}", parts.uri))
            .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
            .unwrap_or_default();
        let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let n = param("n").and_then(|n| n.parse::<usize>().ok());
        let last = param("last");
        let response = pass(&shared, parts, body).await;
        return page_tags(response, &path, n, last).await;
    }
    pass(&shared, parts, body).await
}

/// One page of a full tag list answered by the registry.
async fn page_tags(
    response: Response,
    path: &str,
    n: Option<usize>,
    last: Option<String>,
) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let bytes =
        axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024).await.expect("tag list body");
    let mut list: serde_json::Value = serde_json::from_slice(&bytes).expect("tag list json");
    let mut tags: Vec<String> = serde_json::from_value(list["tags"].take()).unwrap_or_default();
    tags.sort();
    tags.retain(|t| last.as_ref().is_none_or(|last| t > last));
    let n = n.filter(|n| *n > 0).unwrap_or(tags.len());
    let more = tags.len() > n;
    tags.truncate(n);
    let next = tags.last().cloned();
    list["tags"] = tags.into();
    let mut response = ([("content-type", "application/json")], list.to_string()).into_response();
    if let (true, Some(next)) = (more, next) {
        let link = format!(r#"<{path}?last={next}&n={n}>; rel="next""#);
        response.headers_mut().insert("link", HeaderValue::from_str(&link).expect("link"));
    }
    response
}

/// Ends a DELETE's stay in flight, also when its client went away and the
/// handler was dropped.
struct DeleteGuard {
    shared: Arc<Shared>,
    path: String,
}

impl Drop for DeleteGuard {
    fn drop(&mut self) {
        self.shared.deletes_in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut paths =
            self.shared.deleting_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = paths.iter().position(|p| *p == self.path) {
            paths.swap_remove(i);
        }
    }
}

async fn pass(shared: &Shared, parts: axum::http::request::Parts, body: Body) -> Response {
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024 * 1024).await.unwrap_or_default();
    let mut upstream =
        shared.http.request(parts.method.clone(), format!("{}{uri}", shared.upstream)).body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "authorization" {
            upstream = upstream.header(name, value);
        }
    }
    match upstream.send().await {
        Ok(response) => {
            let mut out = Response::builder().status(response.status().as_u16());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let bytes = response.bytes().await.unwrap_or_default();
            out.body(Body::from(bytes)).expect("response")
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

impl AuthProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            mode,
            http: reqwest::Client::new(),
            url,
            requests: AtomicU32::new(0),
            token_requests: Mutex::new(Vec::new()),
            deletes_in_flight: AtomicU32::new(0),
            max_deletes_in_flight: AtomicU32::new(0),
            deleting_paths: Mutex::new(Vec::new()),
            overlapping_deletes: AtomicU32::new(0),
            destructive: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            forwarded: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
        });
        let app =
            Router::new().route("/token", get(token)).fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, task }
    }

    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// Requests the proxy received outside `/token`.
    pub fn requests(&self) -> u32 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Every manifest DELETE and PUT forwarded, in order: (method, path).
    pub fn destructive_requests(&self) -> Vec<(String, String)> {
        self.shared.destructive.lock().expect("destructive").clone()
    }

    /// Every request forwarded, in order: (method, path).
    pub fn forwarded_requests(&self) -> Vec<(String, String)> {
        self.shared.forwarded.lock().expect("forwarded").clone()
    }

    /// Most DELETE requests the proxy had in flight at once.
    pub fn max_deletes_in_flight(&self) -> u32 {
        self.shared.max_deletes_in_flight.load(Ordering::SeqCst)
    }

    /// DELETEs that arrived while another DELETE of the same path was in
    /// flight.
    pub fn overlapping_deletes(&self) -> u32 {
        self.shared.overlapping_deletes.load(Ordering::SeqCst)
    }

    /// Most forwarded requests that arrived within any one second.
    pub fn max_requests_per_second(&self) -> usize {
        self.max_requests_within(std::time::Duration::from_secs(1))
    }

    /// The most requests that arrived within any `window`.
    pub fn max_requests_within(&self, window: std::time::Duration) -> usize {
        let arrivals = self.shared.arrivals.lock().expect("arrivals").clone();
        arrivals
            .iter()
            .map(|start| arrivals.iter().filter(|a| *a >= start && **a < *start + window).count())
            .max()
            .unwrap_or(0)
    }

    /// `(service, scope)` of every token request.
    pub fn token_requests(&self) -> Vec<(String, String)> {
        self.shared.token_requests.lock().expect("token log").clone()
    }
}

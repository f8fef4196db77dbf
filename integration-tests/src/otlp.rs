//! An OTLP trace receiver: the collector's `TraceService` on a local port,
//! keeping every span it is sent with the name of the service that sent
//! it.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that exported it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// String attributes, `(key, value)`.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Received {
    spans: Mutex<Vec<ReceivedSpan>>,
    arrived: Notify,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

struct Service(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| string_value(kv.value.as_ref()?))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let attributes = span
                    .attributes
                    .iter()
                    .filter_map(|kv| Some((kv.key.clone(), string_value(kv.value.as_ref()?)?)))
                    .collect();
                got.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    attributes,
                });
            }
        }
        self.0.spans.lock().expect("lock").extend(got);
        self.0.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn string_value(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind otlp");
        let addr = listener.local_addr().expect("otlp addr");
        let received = Arc::new(Received::default());
        let service = TraceServiceServer::new(Service(received.clone()));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Self { endpoint: format!("http://{addr}"), received, task }
    }

    /// The variables that make a service export here, every
    /// `schedule_delay_ms` (`OTEL_BSP_SCHEDULE_DELAY`; the default is 5 s).
    pub fn envs<'a>(&'a self, schedule_delay_ms: &'a str) -> [(&'static str, &'a str); 2] {
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", schedule_delay_ms),
        ]
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("lock").clone()
    }

    /// Waits until `check` finds what it needs in the spans received,
    /// re-checking on every export.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: std::time::Duration,
        check: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> T {
        let wait = async {
            loop {
                let arrived = self.received.arrived.notified();
                if let Some(found) = check(&self.spans()) {
                    return found;
                }
                arrived.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or_else(|_| {
            let names: Vec<_> =
                self.spans().iter().map(|s| format!("{}:{}", s.service, s.name)).collect();
            panic!("no {what} within {timeout:?}; received {names:?}")
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

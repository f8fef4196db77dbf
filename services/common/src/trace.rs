//! W3C trace context across process boundaries: gRPC metadata, the worker
//! stream's `Assign` messages, and rows that carry a trace to work done
//! later (a policy run's repositories, a job, a pending deletion).
//!
//! Everything here goes through the global propagator, which is only set
//! when traces are exported ([`crate::telemetry::init`]); otherwise
//! injection writes nothing and extraction yields an empty context.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans (set by [`crate::telemetry::init`]):
/// spans that exist only to carry a trace can be skipped otherwise.
pub fn exporting() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn set_exporting() {
    EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The W3C header that names the trace and the parent span.
pub const TRACEPARENT: &str = "traceparent";

/// `span`'s context as propagation fields (`traceparent`, `tracestate`);
/// empty when traces are not exported.
pub fn carrier(span: &tracing::Span) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    inject(&span.context(), &mut fields);
    fields
}

/// `span`'s `traceparent`, for a row that hands the trace to later work.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    carrier(span).remove(TRACEPARENT)
}

/// Makes `span` a child of the remote context in `fields`. Must run before
/// `span` is first entered; a missing or malformed context leaves it a
/// root.
pub fn set_parent<'a>(span: &tracing::Span, fields: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let fields: HashMap<&str, &str> = fields.into_iter().collect();
    if fields.is_empty() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Fields(&fields)));
    // Only fails once the span was entered, which callers never do first.
    let _ = span.set_parent(parent);
}

/// Makes `span` a child of a stored `traceparent`.
pub fn set_parent_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        set_parent(span, [(TRACEPARENT, tp)]);
    }
}

/// Writes the current span's context into outgoing gRPC metadata.
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let mut fields = HashMap::new();
    inject(&tracing::Span::current().context(), &mut fields);
    for (key, value) in fields {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// Makes `span` a child of the context in incoming HTTP/2 headers.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &tonic::codegen::http::HeaderMap) {
    let fields = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| Some((k, headers.get(k)?.to_str().ok()?)));
    set_parent(span, fields);
}

fn inject(cx: &Context, fields: &mut HashMap<String, String>) {
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut Carrier(fields)));
}

struct Carrier<'a>(&'a mut HashMap<String, String>);

impl Injector for Carrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

struct Fields<'a>(&'a HashMap<&'a str, &'a str>);

impl Extractor for Fields<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).copied()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

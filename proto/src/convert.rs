//! Conversions between the protocol's well-known types and the Rust types
//! the services work with.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use pbjson_types::{Duration, ListValue, Struct, Timestamp, Value, value::Kind};

/// Largest integer a `double` holds exactly; integral numbers within it are
/// kept as JSON integers so `{"seconds": 5}` does not become `5.0`.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Converts a JSON object to a `Struct`. Anything but an object gives an
/// empty `Struct`; callers validate the shape first.
pub fn json_to_struct(value: serde_json::Value) -> Struct {
    match value {
        serde_json::Value::Object(map) => {
            Struct { fields: map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect() }
        }
        _ => Struct::default(),
    }
}

fn json_to_value(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.into_iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(_) => Kind::StructValue(json_to_struct(value)),
    };
    Value { kind: Some(kind) }
}

/// Converts a `Struct` to a JSON object. Integral numbers become JSON
/// integers; non-finite numbers (which JSON cannot hold) become `null`.
pub fn struct_to_json(value: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect(),
    )
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: |n| fits in 53 bits, so the cast loses nothing.
        #[allow(clippy::cast_possible_truncation)]
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// Converts a UTC time to a `Timestamp`.
pub fn timestamp_from_chrono(time: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Converts a `Timestamp` to a UTC time; `None` when it is out of range or
/// its nanoseconds are not in `0..1e9`.
pub fn timestamp_to_chrono(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    DateTime::from_timestamp(ts.seconds, nanos)
}

/// Converts a std duration to a protobuf `Duration` (saturating).
pub fn duration_from_std(d: StdDuration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Converts a protobuf `Duration` to a std duration; `None` when negative or
/// malformed.
pub fn duration_to_std(d: &Duration) -> Option<StdDuration> {
    let secs = u64::try_from(d.seconds).ok()?;
    let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    Some(StdDuration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_struct_keeping_integers() {
        let value = json!({
            "seconds": 5,
            "ratio": 0.25,
            "name": "x",
            "nested": {"list": [1, "a", null, true]},
            "negative": -3
        });
        assert_eq!(struct_to_json(&json_to_struct(value.clone())), value);
    }

    #[test]
    fn huge_and_non_finite_numbers_do_not_panic() {
        let s = Struct {
            fields: [
                ("big".to_string(), Value { kind: Some(Kind::NumberValue(1e300)) }),
                ("nan".to_string(), Value { kind: Some(Kind::NumberValue(f64::NAN)) }),
            ]
            .into_iter()
            .collect(),
        };
        let json = struct_to_json(&s);
        assert_eq!(json["nan"], serde_json::Value::Null);
        assert_eq!(json["big"].as_f64(), Some(1e300));
    }

    #[test]
    fn timestamps_reject_bad_nanos() {
        assert!(timestamp_to_chrono(&Timestamp { seconds: 0, nanos: -1 }).is_none());
        assert!(timestamp_to_chrono(&Timestamp { seconds: 0, nanos: 1_000_000_000 }).is_none());
        assert!(timestamp_to_chrono(&Timestamp { seconds: i64::MAX, nanos: 0 }).is_none());
        let now = Utc::now();
        assert_eq!(timestamp_to_chrono(&timestamp_from_chrono(now)), Some(now));
    }

    #[test]
    fn durations_reject_negative() {
        assert!(duration_to_std(&Duration { seconds: -1, nanos: 0 }).is_none());
        let d = StdDuration::from_millis(1500);
        assert_eq!(duration_to_std(&duration_from_std(d)), Some(d));
    }
}

//! The job kinds the scheduler accepts and the shape of their arguments.

use regsweep_common::FieldViolations;
use serde_json::Value;

/// Every kind a job may have.
pub const KINDS: &[&str] = &["sleep", "false"];

/// Longest `sleep` accepted, in seconds.
pub const MAX_SLEEP_SECONDS: f64 = 86_400.0;

/// Largest `args` accepted, serialized as JSON.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

pub fn is_known(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Records every problem of `args` for `kind` under the field `args`.
pub fn validate_args(kind: &str, args: &Value, v: &mut FieldViolations) {
    let Some(object) = args.as_object() else {
        v.add("args", "must be a JSON object");
        return;
    };
    let size = args.to_string().len();
    if size > MAX_ARGS_BYTES {
        v.add("args", format!("is {size} bytes, more than {MAX_ARGS_BYTES}"));
        return;
    }
    let allowed: &[&str] = match kind {
        "sleep" => {
            match object.get("seconds").map(Value::as_f64) {
                None => v.add("args.seconds", "is required"),
                Some(None) => v.add("args.seconds", "must be a number"),
                Some(Some(s)) if !(0.0..=MAX_SLEEP_SECONDS).contains(&s) => v.add(
                    "args.seconds",
                    format!("must be between 0 and {MAX_SLEEP_SECONDS}, got {s}"),
                ),
                Some(Some(_)) => {}
            }
            &["seconds"]
        }
        "false" => {
            if let Some(message) = object.get("message")
                && message.as_str().is_none_or(|m| m.len() > 1000)
            {
                v.add("args.message", "must be a string of at most 1000 bytes");
            }
            &["message"]
        }
        _ => return,
    };
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            v.add(format!("args.{key}"), format!("is not an argument of {kind}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(kind: &str, args: Value) -> Vec<String> {
        let mut v = FieldViolations::new();
        validate_args(kind, &args, &mut v);
        v.fields().map(String::from).collect()
    }

    #[test]
    fn sleep_args() {
        assert!(fields("sleep", json!({"seconds": 0})).is_empty());
        assert!(fields("sleep", json!({"seconds": 0.5})).is_empty());
        assert!(fields("sleep", json!({"seconds": 86400})).is_empty());
        assert_eq!(fields("sleep", json!({})), ["args.seconds"]);
        assert_eq!(fields("sleep", json!({"seconds": -1})), ["args.seconds"]);
        assert_eq!(fields("sleep", json!({"seconds": 86401})), ["args.seconds"]);
        assert_eq!(fields("sleep", json!({"seconds": "5"})), ["args.seconds"]);
        assert_eq!(fields("sleep", json!({"seconds": 1, "x": 1})), ["args.x"]);
        assert_eq!(fields("sleep", json!([1])), ["args"]);
    }

    #[test]
    fn false_args() {
        assert!(fields("false", json!({})).is_empty());
        assert!(fields("false", json!({"message": "boom"})).is_empty());
        assert_eq!(fields("false", json!({"message": 3})), ["args.message"]);
    }

    #[test]
    fn oversized_args() {
        let big = "x".repeat(MAX_ARGS_BYTES);
        assert_eq!(fields("false", json!({"message": big})), ["args"]);
    }
}

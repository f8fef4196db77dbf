//! The job kinds the scheduler accepts and the shape of their arguments.

use regsweep_common::FieldViolations;
use serde_json::Value;

/// Every kind a job may have.
pub const KINDS: &[&str] = &["sleep", "false", "catalog_sync", "tag_cleanup", "joblogs_gc"];

/// Kinds workers run. The rest run inside the scheduler's leader, because
/// they need the database, which workers never see.
pub const WORKER_KINDS: &[&str] = &["sleep", "false", "catalog_sync", "tag_cleanup"];

/// Longest time budget of a `tag_cleanup` job, in seconds.
pub const MAX_TIME_BUDGET_SECONDS: u64 = 86_400;

/// Retention of `joblogs_gc`: shortest and longest age accepted.
pub const MIN_RETENTION_SECONDS: f64 = 60.0;
pub const MAX_RETENTION_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;
/// Largest `keep_last` accepted.
pub const MAX_KEEP_LAST: u64 = 100_000_000;

/// Longest `sleep` accepted, in seconds.
pub const MAX_SLEEP_SECONDS: f64 = 86_400.0;

/// Largest `args` accepted, serialized as JSON.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;

pub fn is_known(kind: &str) -> bool {
    KINDS.contains(&kind)
}

pub fn is_worker_kind(kind: &str) -> bool {
    WORKER_KINDS.contains(&kind)
}

/// Arguments of `joblogs_gc`, once validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retention {
    pub older_than_seconds: f64,
    pub keep_last: u64,
}

impl Retention {
    /// Reads validated `joblogs_gc` args.
    pub fn from_args(args: &Value) -> Option<Self> {
        Some(Self {
            older_than_seconds: args.get("older_than_seconds")?.as_f64()?,
            keep_last: args.get("keep_last").map_or(Some(0), Value::as_u64)?,
        })
    }
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
            if object.get("retryable").is_some_and(|r| !r.is_boolean()) {
                v.add("args.retryable", "must be true or false");
            }
            &["message", "retryable"]
        }
        "catalog_sync" => {
            require_name(object, "registry", v);
            &["registry"]
        }
        "tag_cleanup" => {
            validate_tag_cleanup(object, v);
            &[
                "registry",
                "repository",
                "repository_id",
                "policy",
                "rules",
                "dry_run",
                "preview",
                "time_budget_seconds",
            ]
        }
        "joblogs_gc" => {
            match object.get("older_than_seconds").map(Value::as_f64) {
                None => v.add("args.older_than_seconds", "is required"),
                Some(Some(s)) if (MIN_RETENTION_SECONDS..=MAX_RETENTION_SECONDS).contains(&s) => {}
                Some(_) => v.add(
                    "args.older_than_seconds",
                    format!(
                        "must be a number from {MIN_RETENTION_SECONDS} to {MAX_RETENTION_SECONDS}"
                    ),
                ),
            }
            if let Some(keep) = object.get("keep_last")
                && keep.as_u64().is_none_or(|k| k > MAX_KEEP_LAST)
            {
                v.add("args.keep_last", format!("must be an integer from 0 to {MAX_KEEP_LAST}"));
            }
            &["older_than_seconds", "keep_last"]
        }
        _ => return,
    };
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            v.add(format!("args.{key}"), format!("is not an argument of {kind}"));
        }
    }
}

/// A required string argument of 1 to 255 bytes.
fn require_name(object: &serde_json::Map<String, Value>, key: &str, v: &mut FieldViolations) {
    match object.get(key).map(Value::as_str) {
        None => v.add(format!("args.{key}"), "is required"),
        Some(Some(name)) if !name.is_empty() && name.len() <= 255 => {}
        Some(_) => v.add(format!("args.{key}"), "must be a string of 1 to 255 bytes"),
    }
}

fn validate_tag_cleanup(object: &serde_json::Map<String, Value>, v: &mut FieldViolations) {
    require_name(object, "registry", v);
    require_name(object, "repository", v);
    if let Some(Some(repository)) = object.get("repository").map(Value::as_str)
        && let Err(reason) = regsweep_policy::validate_repository_name(repository)
    {
        v.add("args.repository", reason);
    }
    if object.get("repository_id").is_some_and(|id| id.as_u64().is_none()) {
        v.add("args.repository_id", "must be a non-negative integer");
    }
    if object.get("policy").is_some_and(|p| p.as_str().is_none_or(|p| p.len() > 255)) {
        v.add("args.policy", "must be a string of at most 255 bytes");
    }
    for flag in ["dry_run", "preview"] {
        if object.get(flag).is_some_and(|f| !f.is_boolean()) {
            v.add(format!("args.{flag}"), "must be true or false");
        }
    }
    if let Some(budget) = object.get("time_budget_seconds")
        && budget.as_u64().is_none_or(|b| b == 0 || b > MAX_TIME_BUDGET_SECONDS)
    {
        v.add(
            "args.time_budget_seconds",
            format!("must be an integer from 1 to {MAX_TIME_BUDGET_SECONDS}"),
        );
    }
    let rules = object.get("rules").cloned().unwrap_or_else(|| serde_json::json!({}));
    match serde_json::from_value::<regsweep_policy::RuleSpec>(rules) {
        Err(e) => v.add("args.rules", format!("invalid rules: {e}")),
        Ok(spec) => {
            if let Err(violations) = regsweep_policy::Rules::compile(&spec) {
                for violation in violations {
                    v.add(format!("args.rules.{}", violation.field), violation.description);
                }
            }
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
    fn joblogs_gc_args() {
        assert!(
            fields("joblogs_gc", json!({"older_than_seconds": 86400, "keep_last": 10})).is_empty()
        );
        assert_eq!(fields("joblogs_gc", json!({})), ["args.older_than_seconds"]);
        assert_eq!(
            fields("joblogs_gc", json!({"older_than_seconds": 1})),
            ["args.older_than_seconds"]
        );
        assert_eq!(
            fields("joblogs_gc", json!({"older_than_seconds": 3600, "keep_last": -1})),
            ["args.keep_last"]
        );
        let retention = Retention::from_args(&json!({"older_than_seconds": 3600})).expect("valid");
        assert_eq!(retention.keep_last, 0);
    }

    #[test]
    fn cleanup_args() {
        assert!(fields("catalog_sync", json!({"registry": "local"})).is_empty());
        assert_eq!(fields("catalog_sync", json!({})), ["args.registry"]);
        let ok = json!({
            "registry": "local", "repository": "team/app", "repository_id": 3,
            "rules": {"keep_n": 2, "name_regex_delete": "v.*"}, "dry_run": true,
            "time_budget_seconds": 60,
        });
        assert!(fields("tag_cleanup", ok).is_empty());
        assert_eq!(
            fields(
                "tag_cleanup",
                json!({"registry": "r", "repository": "Bad Name", "rules": {"name_regex_keep": "("},
                       "time_budget_seconds": 0, "dry_run": "yes"})
            ),
            [
                "args.repository",
                "args.dry_run",
                "args.time_budget_seconds",
                "args.rules.name_regex_keep"
            ]
        );
    }

    #[test]
    fn oversized_args() {
        let big = "x".repeat(MAX_ARGS_BYTES);
        assert_eq!(fields("false", json!({"message": big})), ["args"]);
    }
}

//! `InvalidArgument` errors that name every bad field, as
//! `google.rpc.BadRequest` field violations clients can act on.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The bad fields of one request. Validation collects all of them before
/// answering, so a client fixes its request in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A single violation.
    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    /// Records that `field` is wrong and why (lower case, no trailing dot).
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push((field.into(), description.into()));
    }

    /// Whether no field is wrong.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// The fields named so far, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.violations.iter().map(|(field, _)| field.as_str())
    }

    /// Every (field, description), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.violations.iter().map(|(field, description)| (field.as_str(), description.as_str()))
    }

    /// `Ok(())` when no field is wrong, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// An `InvalidArgument` status whose message lists the violations and
    /// whose details carry them as `google.rpc.BadRequest`.
    pub fn into_status(self) -> Status {
        let message = self.to_string();
        let details = ErrorDetails::with_bad_request(
            self.violations
                .into_iter()
                .map(|(field, description)| FieldViolation::new(field, description))
                .collect::<Vec<_>>(),
        );
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

impl fmt::Display for FieldViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid request")?;
        for (i, (field, description)) in self.violations.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{field}: {description}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldViolations {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_every_violation() {
        let mut v = FieldViolations::new();
        v.add("kind", "unknown kind \"x\"");
        v.add("page_size", "must be between 1 and 1000");
        let status = v.into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: kind: unknown kind \"x\"; page_size: must be between 1 and 1000"
        );
        let bad = status.get_details_bad_request().expect("bad request details");
        let fields: Vec<_> = bad.field_violations.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["kind", "page_size"]);
    }

    #[test]
    fn empty_is_ok() {
        assert_eq!(FieldViolations::new().into_result(), Ok(()));
    }
}

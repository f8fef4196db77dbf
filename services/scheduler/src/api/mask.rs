//! `update_mask` of the Update rpcs: which fields to change.

use regsweep_common::FieldViolations;

/// The fields an update names; every updatable one when the mask is empty.
pub struct UpdateMask<'a> {
    mask: &'a [String],
}

impl<'a> UpdateMask<'a> {
    /// Checks that `mask` names only `updatable` fields.
    pub fn parse(mask: &'a [String], updatable: &[&str]) -> Result<Self, FieldViolations> {
        let mut v = FieldViolations::new();
        for field in mask {
            if !updatable.contains(&field.as_str()) {
                v.add(
                    "update_mask",
                    format!("{field:?} cannot be updated; use {}", updatable.join(", ")),
                );
            }
        }
        v.into_result()?;
        Ok(Self { mask })
    }

    /// Whether `field` is to change.
    pub fn has(&self, field: &str) -> bool {
        self.mask.is_empty() || self.mask.iter().any(|m| m == field)
    }
}

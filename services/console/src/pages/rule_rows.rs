//! A policy's rules as rows of the policy form: one row of controls per
//! rule, a blank row to add one, and a box to remove one. Works without
//! JavaScript: "Add a rule" sends the form back with one more blank row.
//!
//! Controls are named `rules[N].field`. Rows are renumbered as they are
//! read (blank and removed rows dropped), so the row a scheduler violation
//! names (`policy.rules[2].semver`) is the third row shown again.

use std::collections::HashMap;
use std::time::Duration;

use maud::{Markup, html};
use regsweep_proto::v1::{self, TagState, VersionGroup};
use regsweep_proto::{duration_from_std, duration_to_std};

use crate::security::Form;
use crate::view;

/// Most rows read from a form: more than the scheduler's limit on rules
/// (50) plus the empty rows a form shows.
const MAX_ROWS: usize = 64;

/// One rule as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleRow {
    pub name: String,
    /// `glob` or `regex`: how `pattern` selects tags.
    pub matcher: String,
    pub pattern: String,
    pub exclude_regex: String,
    /// A `TagState` name, or empty for the default.
    pub tag_state: String,
    pub semver: String,
    pub keep_all: bool,
    pub keep_newest: String,
    pub keep_within: String,
    /// A `VersionGroup` name, or empty.
    pub per: String,
    pub count_prereleases: bool,
}

impl RuleRow {
    pub fn from_proto(r: &v1::PolicyRule) -> Self {
        let (matcher, pattern) = if r.tag_glob.is_empty() {
            ("regex", r.tag_regex.clone())
        } else {
            ("glob", r.tag_glob.clone())
        };
        let within = r.keep_within.as_ref().and_then(duration_to_std).unwrap_or_default();
        let name_of = |unspecified: bool, name: &str| {
            if unspecified { String::new() } else { name.to_string() }
        };
        Self {
            name: r.name.clone(),
            matcher: matcher.into(),
            pattern,
            exclude_regex: r.exclude_regex.clone(),
            tag_state: name_of(r.tag_state() == TagState::Unspecified, r.tag_state().as_str_name()),
            semver: r.semver.clone(),
            keep_all: r.keep_all,
            keep_newest: if r.keep_newest == 0 { String::new() } else { r.keep_newest.to_string() },
            keep_within: if within.is_zero() {
                String::new()
            } else {
                humantime::format_duration(within).to_string()
            },
            per: name_of(r.per() == VersionGroup::Unspecified, r.per().as_str_name()),
            count_prereleases: r.count_prereleases,
        }
    }

    /// Row `n` of a submitted form's rule fields, unless it is blank or
    /// removed.
    fn from_form(fields: &HashMap<&str, &str>, n: usize) -> Option<Self> {
        let text = |field: &str| {
            fields.get(format!("rules[{n}].{field}").as_str()).copied().unwrap_or("").trim()
        };
        let checked = |field: &str| text(field) == "on";
        let row = Self {
            name: text("name").into(),
            matcher: text("matcher").into(),
            pattern: text("pattern").into(),
            exclude_regex: text("exclude_regex").into(),
            tag_state: text("tag_state").into(),
            semver: text("semver").into(),
            keep_all: checked("keep_all"),
            keep_newest: text("keep_newest").into(),
            keep_within: text("keep_within").into(),
            per: text("per").into(),
            count_prereleases: checked("count_prereleases"),
        };
        let blank = Self { matcher: row.matcher.clone(), ..Self::default() } == row;
        (!blank && !checked("remove")).then_some(row)
    }

    /// The rule, or what in the row is not even a number or a duration.
    pub fn to_proto(&self) -> Result<v1::PolicyRule, Vec<String>> {
        let mut problems = Vec::new();
        let keep_newest = match self.keep_newest.as_str() {
            "" => 0,
            text => text.parse().unwrap_or_else(|_| {
                problems.push("keep newest: a whole number".to_string());
                0
            }),
        };
        let keep_within = match self.keep_within.as_str() {
            "" => None,
            text => match regsweep_common::duration::parse(text) {
                Ok(d) => Some(duration_from_std(d)),
                Err(e) => {
                    problems.push(format!("kept if pushed within: {e}"));
                    Some(duration_from_std(Duration::ZERO))
                }
            },
        };
        let glob = self.matcher == "glob";
        let rule = v1::PolicyRule {
            name: self.name.clone(),
            tag_regex: if glob { String::new() } else { self.pattern.clone() },
            tag_glob: if glob { self.pattern.clone() } else { String::new() },
            exclude_regex: self.exclude_regex.clone(),
            tag_state: TagState::from_str_name(&self.tag_state).unwrap_or_default().into(),
            semver: self.semver.clone(),
            keep_all: self.keep_all,
            keep_newest,
            keep_within,
            per: VersionGroup::from_str_name(&self.per).unwrap_or_default().into(),
            count_prereleases: self.count_prereleases,
        };
        if problems.is_empty() { Ok(rule) } else { Err(problems) }
    }
}

/// The rows of a submitted form, renumbered from 0.
pub fn from_form(form: &Form) -> Vec<RuleRow> {
    // Looked up once each: a form's size is the sender's to choose.
    let fields: HashMap<&str, &str> = form
        .0
        .iter()
        .filter(|(k, _)| k.starts_with("rules["))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (0..MAX_ROWS).filter_map(|n| RuleRow::from_form(&fields, n)).collect()
}

/// The violation key of row `n`: its messages are shown under it.
pub fn key(n: usize) -> String {
    format!("rules[{n}]")
}

/// The rows as a table of controls, with `blank` empty rows after them;
/// `errors(n)` are row `n`'s messages.
pub fn render<'a>(
    rows: &[RuleRow],
    blank: usize,
    errors: impl Fn(usize) -> Option<&'a Vec<String>>,
) -> Markup {
    let empty = RuleRow { matcher: "glob".into(), ..RuleRow::default() };
    let all = rows.iter().chain(std::iter::repeat_n(&empty, blank));
    html! {
        fieldset.rules #rules {
            legend { "Rules (replace the single-rule fields above; a tag is kept if any rule keeps it)" }
            table {
                thead { tr {
                    th { "Name" } th { "Tags by" } th { "Pattern" } th { "Except (regex)" }
                    th { "State" } th { "Semver range" } th { "Keep all" } th { "Keep newest" }
                    th { "Kept if pushed within" } th { "Per" } th { "Count prereleases" } th { "Remove" }
                } }
                tbody {
                    @for (n, row) in all.enumerate() {
                        (row_controls(n, row, errors(n)))
                    }
                }
            }
            button type="submit" name="action" value="add_rule" { "Add a rule" }
        }
    }
}

fn row_controls(n: usize, row: &RuleRow, errors: Option<&Vec<String>>) -> Markup {
    let id = |field: &str| format!("rule-{n}-{field}");
    let name = |field: &str| format!("rules[{n}].{field}");
    let described = errors.map(|_| format!("err-rules-{n}"));
    let text = |field: &str, value: &str, label: &str| {
        html! {
            td { input #(id(field)) name=(name(field)) value=(value) aria-label=(format!("rule {} {label}", n + 1))
                aria-describedby=[described.clone()]; }
        }
    };
    let check = |field: &str, on: bool, label: &str| {
        html! {
            td { input #(id(field)) type="checkbox" name=(name(field)) checked[on] aria-label=(format!("rule {} {label}", n + 1)); }
        }
    };
    let choose = |field: &str, value: &str, label: &str, options: &[(&str, &str)]| {
        let label = format!("rule {} {label}", n + 1);
        html! { td { (view::select(&id(field), &name(field), Some(&label), value, options)) } }
    };
    html! {
        tr {
            (text("name", &row.name, "name"))
            (choose("matcher", &row.matcher, "tags by", &[("glob", "glob"), ("regex", "regex")]))
            (text("pattern", &row.pattern, "pattern"))
            (text("exclude_regex", &row.exclude_regex, "except"))
            (choose("tag_state", &row.tag_state, "state", &[
                ("", "default"),
                (TagState::Tagged.as_str_name(), "tagged"),
                (TagState::Untagged.as_str_name(), "untagged"),
                (TagState::Any.as_str_name(), "any"),
            ]))
            (text("semver", &row.semver, "semver range"))
            (check("keep_all", row.keep_all, "keep all"))
            (text("keep_newest", &row.keep_newest, "keep newest"))
            (text("keep_within", &row.keep_within, "kept if pushed within"))
            (choose("per", &row.per, "per", &[
                ("", "-"),
                (VersionGroup::Major.as_str_name(), "major"),
                (VersionGroup::Minor.as_str_name(), "minor"),
            ]))
            (check("count_prereleases", row.count_prereleases, "count prereleases"))
            (check("remove", false, "remove"))
        }
        @if let Some(errors) = errors {
            tr { td colspan="12" {
                div.error id=(described.unwrap_or_default()) role="alert" { @for e in errors { div { (e) } } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> v1::PolicyRule {
        v1::PolicyRule {
            name: "releases".into(),
            tag_glob: "v*".into(),
            semver: ">=1.0.0".into(),
            keep_newest: 2,
            keep_within: Some(duration_from_std(Duration::from_secs(7 * 86_400))),
            per: VersionGroup::Major.into(),
            count_prereleases: true,
            ..Default::default()
        }
    }

    /// A form as a browser would send the rendered rows back.
    fn sent(rows: &[RuleRow], extra: &[(&str, &str)]) -> Form {
        let mut fields = Vec::new();
        for (n, row) in rows.iter().enumerate() {
            let mut put = |field: &str, value: &str| {
                fields.push((format!("rules[{n}].{field}"), value.to_string()));
            };
            put("name", &row.name);
            put("matcher", &row.matcher);
            put("pattern", &row.pattern);
            put("exclude_regex", &row.exclude_regex);
            put("tag_state", &row.tag_state);
            put("semver", &row.semver);
            put("keep_newest", &row.keep_newest);
            put("keep_within", &row.keep_within);
            put("per", &row.per);
            if row.keep_all {
                put("keep_all", "on");
            }
            if row.count_prereleases {
                put("count_prereleases", "on");
            }
        }
        fields.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Form(fields)
    }

    #[test]
    fn a_rule_survives_the_form_unchanged() {
        let shown = RuleRow::from_proto(&rule());
        let read = from_form(&sent(&[shown], &[]));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].to_proto().expect("a rule"), rule());
    }

    #[test]
    fn blank_and_removed_rows_are_dropped_and_the_rest_renumbered() {
        let blank = RuleRow { matcher: "glob".into(), ..RuleRow::default() };
        let kept = RuleRow::from_proto(&rule());
        let gone = RuleRow { name: "gone".into(), ..kept.clone() };
        let form = sent(&[blank, gone, kept.clone()], &[("rules[1].remove", "on")]);
        assert_eq!(from_form(&form), [kept]);
    }

    #[test]
    fn what_is_not_a_number_or_a_duration_is_named() {
        let row = RuleRow {
            keep_newest: "two".into(),
            keep_within: "a week".into(),
            ..RuleRow::default()
        };
        let problems = row.to_proto().expect_err("not a rule");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("keep newest"), "{problems:?}");
    }
}

//! Cron expressions: parsing (5 fields, or 6 with seconds first; UTC) and
//! the next firing.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Longest expression accepted (the parser's work grows with it).
pub const MAX_SCHEDULE_CHARS: usize = 128;

/// Parses `expression`, or says why not in a sentence for an operator.
pub fn parse(expression: &str) -> Result<Cron, String> {
    if expression.chars().count() > MAX_SCHEDULE_CHARS {
        return Err(format!("must be at most {MAX_SCHEDULE_CHARS} characters"));
    }
    let fields = expression.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds \
             first, got {fields}"
        ));
    }
    // An empty list item (`,`, `1,`, `,5`) makes a field that matches
    // nothing in croner, whose "never fires" search then walks every
    // second up to its year limit: seconds of CPU per request.
    if let Some(field) = expression.split_whitespace().find(|f| f.split(',').any(str::is_empty)) {
        return Err(format!("field {field:?} has an empty list item"));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expression)
        .map_err(|e| format!("invalid cron expression: {e}"))?;
    if next_of(&cron, Utc::now()).is_none() {
        return Err("never fires".to_string());
    }
    Ok(cron)
}

fn next_of(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// The next firing of `expression` strictly after `after`; `None` when it
/// does not parse or never fires again. Matches the scheduler's `NextFire`.
pub fn next_after(expression: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_of(&parse(expression).ok()?, after)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn empty_list_items_are_refused_at_once() {
        // Found by the `durations` fuzz target: this one took 5 s to refuse.
        for expression in [", * * * * *", "1, * * * *", "* ,5 * * *", "0 0 1,,2 * *"] {
            let error = parse(expression).expect_err(expression);
            assert!(error.contains("empty list item"), "{expression}: {error}");
        }
        assert!(parse("1,2 * * * *").is_ok());
    }

    #[test]
    fn five_and_six_fields() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 30).single().expect("time");
        assert_eq!(
            next_after("*/5 * * * *", t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).single().expect("time"))
        );
        assert_eq!(
            next_after("* * * * * *", t),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 31).single().expect("time"))
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in ["", "* * *", "61 * * * *", "* * * * * * * *", "nope", "0 0 30 2 *"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"1,".repeat(100)).is_err());
    }
}

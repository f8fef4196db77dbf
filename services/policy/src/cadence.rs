//! How often a policy runs: a fixed interval, a number of calendar months,
//! or a cron expression (UTC).

use chrono::{DateTime, Datelike, Duration, Months, Utc};

use crate::cron;

/// A policy's cadence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// A fixed interval: 1, 7 or 14 days.
    Every(Duration),
    /// This many calendar months, on the same day of the month (clamped to
    /// the month's last day).
    Months(u32),
    /// A cron expression, its fields separated by single spaces.
    Cron(String),
}

const FORMS: &str =
    "1d, 7d, 14d, 1month, 3month, or a cron expression (5 fields, or 6 with seconds first; utc)";

impl Cadence {
    /// Parses one of the fixed forms (exactly as written) or a cron
    /// expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "1d" => return Ok(Self::Every(Duration::days(1))),
            "7d" => return Ok(Self::Every(Duration::days(7))),
            "14d" => return Ok(Self::Every(Duration::days(14))),
            "1month" => return Ok(Self::Months(1)),
            "3month" => return Ok(Self::Months(3)),
            "" => return Err(format!("is required: use {FORMS}")),
            _ => {}
        }
        // Fewer fields cannot be a cron expression; say which forms exist
        // rather than how cron fields work.
        if text.split_whitespace().count() < 5 {
            return Err(format!("unknown cadence {text:?}: use {FORMS}"));
        }
        cron::parse(text).map_err(|reason| format!("{reason}: use {FORMS}"))?;
        Ok(Self::Cron(text.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    /// The text [`Cadence::parse`] reads back as `self`, for every cadence
    /// it returns.
    pub fn as_str(&self) -> String {
        match self {
            Self::Every(period) if period.num_seconds() % 86_400 == 0 => {
                format!("{}d", period.num_days())
            }
            Self::Every(period) => format!("{}s", period.num_seconds()),
            Self::Months(n) => format!("{n}month"),
            Self::Cron(expression) => expression.clone(),
        }
    }

    /// The next run strictly after `after` (the first run of a new policy):
    /// one period, one step of months, or the cron's next firing. `None`
    /// past the end of time or for a cron that no longer fires.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(period) if *period > Duration::zero() => after.checked_add_signed(*period),
            Self::Every(_) => None,
            Self::Months(n) => after.checked_add_months(Months::new(*n)),
            Self::Cron(expression) => cron::next_after(expression, after),
        }
    }

    /// The run after one that was due at `due` completed at `now`: the
    /// first of `due + k * cadence` (k >= 1) after `now`, so a long outage
    /// gives one run, not a burst; for a cron, its next firing after `now`.
    /// Computed arithmetically, in constant time whatever the outage.
    pub fn advance(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(period) => {
                let step = period.num_milliseconds();
                if step <= 0 {
                    return None;
                }
                let behind = (now - due).num_milliseconds().max(0);
                let steps = behind / step + 1;
                due.checked_add_signed(Duration::milliseconds(step.checked_mul(steps)?))
            }
            Self::Months(n) => {
                let n = i64::from(*n);
                if n == 0 {
                    return None;
                }
                // Whole months from `due` to `now`; every step is taken from
                // `due`, not from the previous clamped date, so the 31st
                // stays the 31st where it exists.
                let months = (i64::from(now.year()) - i64::from(due.year())) * 12
                    + i64::from(now.month())
                    - i64::from(due.month());
                let first = (months.max(0) / n).max(1);
                // `due + (first + 1) * n` months lands in a later month than
                // `now`, so two tries are enough.
                (first..first + 2)
                    .filter_map(|k| {
                        let months = u32::try_from(k.checked_mul(n)?).ok()?;
                        due.checked_add_months(Months::new(months))
                    })
                    .find(|next| *next > now)
            }
            // Never earlier than `due`, or a run completed ahead of time
            // would be scheduled again at the same firing.
            Self::Cron(expression) => cron::next_after(expression, now.max(due)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 3, 0, 0).single().expect("time")
    }

    #[test]
    fn parses_the_fixed_forms_exactly() {
        assert_eq!(Cadence::parse("1d"), Ok(Cadence::Every(Duration::days(1))));
        assert_eq!(Cadence::parse("7d"), Ok(Cadence::Every(Duration::days(7))));
        assert_eq!(Cadence::parse("14d"), Ok(Cadence::Every(Duration::days(14))));
        assert_eq!(Cadence::parse("1month"), Ok(Cadence::Months(1)));
        assert_eq!(Cadence::parse(" 3month "), Ok(Cadence::Months(3)));
        for text in ["1d", "7d", "14d", "1month", "3month", "0 3 * * *", "*/10 0 3 * * 1"] {
            assert_eq!(Cadence::parse(text).expect("valid").as_str(), text);
        }
    }

    #[test]
    fn crons_are_normalized() {
        assert_eq!(Cadence::parse(" 0  3 *\t* * "), Ok(Cadence::Cron("0 3 * * *".into())));
    }

    #[test]
    fn rejects_everything_else_listing_the_forms() {
        for bad in
            ["", "2d", "1mo", "1D", "weekly", "@daily", "-1d", "1 d", "61 * * * *", "0 0 30 2 *"]
        {
            let reason = Cadence::parse(bad).expect_err(bad);
            assert!(reason.contains("1d, 7d, 14d, 1month, 3month"), "{bad:?}: {reason}");
        }
        let reason = Cadence::parse("61 * * * *").expect_err("bad minute");
        assert!(reason.starts_with("invalid cron expression"), "{reason}");
        let reason = Cadence::parse("* * * * * * *").expect_err("7 fields");
        assert!(reason.contains("got 7"), "{reason}");
    }

    #[test]
    fn next_after_is_one_step() {
        let at = t(2026, 1, 31);
        assert_eq!(Cadence::parse("7d").expect("valid").next_after(at), Some(t(2026, 2, 7)));
        assert_eq!(Cadence::Months(1).next_after(at), Some(t(2026, 2, 28)));
        assert_eq!(Cadence::Months(1).next_after(t(2028, 1, 31)), Some(t(2028, 2, 29)));
        let cron = Cadence::parse("0 3 * * *").expect("valid");
        // Strictly after: a firing at `after` itself is not the next one.
        assert_eq!(cron.next_after(at), Some(t(2026, 2, 1)));
        assert_eq!(Cadence::Every(Duration::zero()).next_after(at), None);
    }

    #[test]
    fn advance_skips_an_outage_in_one_step() {
        let due = t(2026, 1, 1);
        let now = due + Duration::days(100) + Duration::hours(1);
        let next = Cadence::Every(Duration::days(1)).advance(due, now).expect("next");
        assert_eq!(next, due + Duration::days(101));
        // A period exactly elapsed is not "after now".
        let now = due + Duration::days(14);
        let fortnight = Cadence::Every(Duration::days(14));
        assert_eq!(fortnight.advance(due, now), Some(due + Duration::days(28)));
        // On time or early: exactly one period later.
        assert_eq!(fortnight.advance(due, due), Some(due + Duration::days(14)));
        assert_eq!(fortnight.advance(due, due - Duration::days(3)), Some(due + Duration::days(14)));
        // Centuries behind still cost one division.
        let far = Cadence::Every(Duration::days(1)).advance(t(1900, 1, 1), t(2026, 1, 1));
        assert_eq!(far, Some(t(2026, 1, 2)));
        assert_eq!(Cadence::Every(Duration::zero()).advance(due, now), None);
    }

    #[test]
    fn months_clamp_to_the_month_end() {
        let due = t(2026, 1, 31);
        assert_eq!(Cadence::Months(1).advance(due, due), Some(t(2026, 2, 28)));
        assert_eq!(Cadence::Months(3).advance(due, due), Some(t(2026, 4, 30)));
        // Steps count from `due`: after February's clamp comes March 31.
        assert_eq!(Cadence::Months(1).advance(due, t(2026, 3, 5)), Some(t(2026, 3, 31)));
        assert_eq!(Cadence::Months(1).advance(due, t(2026, 3, 31)), Some(t(2026, 4, 30)));
        // A quarter, two years behind: the next quarter on the grid.
        assert_eq!(Cadence::Months(3).advance(due, t(2028, 2, 1)), Some(t(2028, 4, 30)));
        assert_eq!(Cadence::Months(3).advance(due, t(2028, 4, 30)), Some(t(2028, 7, 31)));
        assert_eq!(
            Cadence::Months(1).advance(t(1800, 1, 15), t(2026, 5, 20)),
            Some(t(2026, 6, 15))
        );
    }

    #[test]
    fn cron_advances_from_now() {
        let cadence = Cadence::parse("0 3 * * *").expect("valid");
        let due = t(2026, 1, 1);
        assert_eq!(cadence.advance(due, t(2026, 1, 10)), Some(t(2026, 1, 11)));
        // Completed before it was due: the firing after `due`.
        assert_eq!(cadence.advance(due, t(2025, 12, 1)), Some(t(2026, 1, 2)));
    }
}

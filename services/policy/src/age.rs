//! How old an image is, by a clock that can be trusted. Reproducible builds
//! (ko, Bazel, distroless, buildpacks, Nix) write `created` as the epoch or
//! year 1; some images have none, and some clocks run ahead. Such a time is
//! *unknown*: it never outranks a known one and is never "older than"
//! anything. Where `created` is unknown, the time regsweep first saw the
//! image stands in for it (the `auto` age source).

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Where an image's age comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeSource {
    /// `created` when it is believable, else when regsweep first saw it.
    #[default]
    Auto,
    /// The image's `created` only.
    Created,
    /// When regsweep first saw the tag on that digest only.
    FirstSeen,
}

impl AgeSource {
    /// Its stored name (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Created => "created",
            Self::FirstSeen => "first_seen",
        }
    }

    /// A stored name; `None` when it is none of them.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Auto, Self::Created, Self::FirstSeen].into_iter().find(|s| s.name() == name)
    }
}

/// Which clock a decision's age came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeFrom {
    Created,
    FirstSeen,
    /// Neither was known: the image ranks after every image of known age
    /// and no age rule deletes it.
    Unknown,
}

/// `created` at or before this is a placeholder, not a time.
fn epoch_floor() -> DateTime<Utc> {
    Utc.timestamp_opt(1, 0).single().unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// How far ahead of `now` a clock may run before its time is not believed.
const FUTURE_SKEW: Duration = Duration::days(1);

/// `created` if it is a believable time at `now`.
pub fn believable(created: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let latest = now.checked_add_signed(FUTURE_SKEW).unwrap_or(DateTime::<Utc>::MAX_UTC);
    created.filter(|c| *c > epoch_floor() && *c <= latest)
}

/// The age an image is ranked and judged by, and where it came from.
pub fn effective(
    source: AgeSource,
    created: Option<DateTime<Utc>>,
    first_seen: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, AgeFrom) {
    let created = believable(created, now);
    let first_seen = believable(first_seen, now);
    let from_created = created.map(|c| (Some(c), AgeFrom::Created));
    let from_seen = first_seen.map(|s| (Some(s), AgeFrom::FirstSeen));
    let unknown = (None, AgeFrom::Unknown);
    match source {
        AgeSource::Auto => from_created.or(from_seen).unwrap_or(unknown),
        AgeSource::Created => from_created.unwrap_or(unknown),
        AgeSource::FirstSeen => from_seen.unwrap_or(unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().expect("time")
    }

    #[test]
    fn placeholders_and_future_times_are_unknown() {
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).expect("time").to_utc());
        for bad in ["1970-01-01T00:00:00Z", "1970-01-01T00:00:01Z", "0001-01-01T00:00:00Z"] {
            assert_eq!(believable(at(bad), now()), None, "{bad}");
        }
        assert_eq!(believable(at("1970-01-01T00:00:02Z"), now()), at("1970-01-01T00:00:02Z"));
        assert!(believable(Some(now() + Duration::hours(23)), now()).is_some());
        assert_eq!(believable(Some(now() + Duration::hours(25)), now()), None);
        assert_eq!(believable(None, now()), None);
    }

    #[test]
    fn stored_names_are_the_serde_names() {
        for source in [AgeSource::Auto, AgeSource::Created, AgeSource::FirstSeen] {
            let json = serde_json::to_value(source).unwrap();
            assert_eq!(json.as_str(), Some(source.name()));
            assert_eq!(AgeSource::parse(source.name()), Some(source));
        }
        assert_eq!(AgeSource::parse("Auto"), None);
    }

    #[test]
    fn auto_falls_back_to_first_seen() {
        let seen = Some(now() - Duration::days(3));
        let epoch = Some(DateTime::<Utc>::UNIX_EPOCH);
        let good = Some(now() - Duration::days(9));
        assert_eq!(effective(AgeSource::Auto, epoch, seen, now()), (seen, AgeFrom::FirstSeen));
        assert_eq!(effective(AgeSource::Auto, good, seen, now()), (good, AgeFrom::Created));
        assert_eq!(effective(AgeSource::Auto, None, None, now()), (None, AgeFrom::Unknown));
        assert_eq!(effective(AgeSource::Created, epoch, seen, now()), (None, AgeFrom::Unknown));
        assert_eq!(effective(AgeSource::FirstSeen, good, seen, now()), (seen, AgeFrom::FirstSeen));
    }
}

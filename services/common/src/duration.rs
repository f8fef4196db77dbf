//! Human durations on the command line: `0s`, `500ms`, `5s`, `1h`, `14d`.

use std::time::Duration;

/// Parses a duration for clap. A bare `0` is accepted; any other number
/// needs a unit so `--heartbeat-ttl 15` is not silently milliseconds.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("14d"), Ok(Duration::from_secs(14 * 86_400)));
    }

    #[test]
    fn rejects_unitless_and_garbage() {
        assert!(parse("15").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("soon").is_err());
    }
}

//! Repository selectors: globs on repository names where `*` stays within
//! a path segment and `**` crosses segments.

use globset::{GlobBuilder, GlobMatcher};

/// Longest selector accepted, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 256;

/// A parsed repository selector.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
    matcher: GlobMatcher,
}

impl Selector {
    /// Parses `glob`: `*` and `?` never match `/`, `**` matches any number
    /// of segments, `[...]` is a character class (which may match `/`),
    /// `{a,b}` alternates and `\` escapes.
    pub fn parse(glob: &str) -> Result<Self, String> {
        if glob.is_empty() {
            return Err("is required (`**` selects every repository)".to_string());
        }
        if glob.len() > MAX_SELECTOR_BYTES {
            return Err(format!("must be at most {MAX_SELECTOR_BYTES} bytes"));
        }
        // Without literal separators `team/*` would also select
        // `team/app/cache`, a wider cleanup than the operator wrote.
        let compiled = GlobBuilder::new(glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob: {}", e.kind()))?;
        Ok(Self { text: glob.to_string(), matcher: compiled.compile_matcher() })
    }

    pub fn is_match(&self, repository: &str) -> bool {
        self.matcher.is_match(repository)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selects(glob: &str, repository: &str) -> bool {
        Selector::parse(glob).expect("valid glob").is_match(repository)
    }

    #[test]
    fn star_stays_in_a_segment() {
        assert!(selects("team/*", "team/app"));
        assert!(!selects("team/*", "team/app/cache"));
        assert!(!selects("team/*", "other/app"));
        assert!(!selects("team/*", "team"));
        assert!(selects("*/cache", "x/cache"));
        assert!(!selects("*/cache", "x/y/cache"));
        assert!(!selects("team-?", "team/"));
        // A class matches what it lists, `/` included, as in globset.
        assert!(selects("a[!x]b", "a/b"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(selects("team/**", "team/app"));
        assert!(selects("team/**", "team/app/cache"));
        assert!(!selects("team/**", "teams/app"));
        assert!(selects("**/cache", "cache"));
        assert!(selects("**/cache", "a/b/cache"));
        assert!(!selects("**/cache", "a/b/cache-x"));
        assert!(selects("**", "a/b/c"));
        assert!(selects("**", "app"));
    }

    #[test]
    fn literals_alternates_and_escapes() {
        assert!(selects("app", "app"));
        assert!(!selects("app", "app2") && !selects("app", "team/app"));
        assert!(selects("{web,api}/*", "api/server"));
        assert!(!selects("{web,api}/*", "db/server"));
        assert!(selects(r"a\*", "a*") && !selects(r"a\*", "ab"));
    }

    #[test]
    fn keeps_the_text() {
        assert_eq!(Selector::parse("team/**").expect("valid").as_str(), "team/**");
    }

    #[test]
    fn rejects_bad_globs() {
        assert!(Selector::parse("").expect_err("empty").starts_with("is required"));
        assert!(Selector::parse("team/[").expect_err("open class").starts_with("invalid glob"));
        assert!(Selector::parse("{a,b").is_err());
        assert!(Selector::parse(&"a".repeat(MAX_SELECTOR_BYTES)).is_ok());
        let long = Selector::parse(&"a".repeat(MAX_SELECTOR_BYTES + 1));
        assert_eq!(long.expect_err("too long"), "must be at most 256 bytes");
    }
}

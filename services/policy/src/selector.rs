//! Repository selectors: globs on repository names where `*` stays within
//! a path segment and `**` crosses segments.

use std::sync::{Arc, OnceLock};

use globset::{GlobBuilder, GlobMatcher};

/// Longest selector accepted, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 256;

/// A parsed repository selector.
#[derive(Clone, Debug)]
pub struct Selector {
    text: String,
    /// The glob as an anchored regex, for the overlap check.
    regex: String,
    matcher: GlobMatcher,
    /// The regex as a DFA, compiled on the first overlap check and kept,
    /// so checking every pair of a registry's policies compiles each once.
    dfa: OnceLock<Result<Arc<crate::overlap::Dfa>, String>>,
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
        Ok(Self {
            text: glob.to_string(),
            regex: compiled.regex().to_string(),
            matcher: compiled.compile_matcher(),
            dfa: OnceLock::new(),
        })
    }

    /// A shortest valid repository name both selectors select, or `None`
    /// when no name can be selected by both. Exact, not a heuristic: an
    /// error means the selectors were too complex to decide, and callers
    /// must then treat them as overlapping.
    pub fn overlap(&self, other: &Selector) -> Result<Option<String>, String> {
        crate::overlap::witness(self.dfa()?.as_ref(), other.dfa()?.as_ref())
    }

    fn dfa(&self) -> Result<Arc<crate::overlap::Dfa>, String> {
        self.dfa.get_or_init(|| crate::overlap::compile(&self.regex).map(Arc::new)).clone()
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

    fn overlap(a: &str, b: &str) -> Option<String> {
        let a = Selector::parse(a).expect("valid glob");
        a.overlap(&Selector::parse(b).expect("valid glob")).expect("decidable")
    }

    #[test]
    fn overlapping_selectors_name_a_shortest_repository_both_select() {
        assert_eq!(overlap("**", "**").as_deref(), Some("a"));
        assert_eq!(overlap("team/**", "**").as_deref(), Some("team/a"));
        assert_eq!(overlap("team/*", "*/cache").as_deref(), Some("team/cache"));
        assert_eq!(overlap("{web,api}/*", "api/**").as_deref(), Some("api/a"));
        assert_eq!(overlap("app", "a?p").as_deref(), Some("app"));
        assert_eq!(overlap("**/cache", "team/**").as_deref(), Some("team/cache"));
        // `team/**` also selects `team/x/y`, which `team/*` does too at one level.
        assert_eq!(overlap("team/*", "team/**").as_deref(), Some("team/a"));
    }

    #[test]
    fn disjoint_selectors_have_no_witness() {
        assert_eq!(overlap("team/*", "team/*/cache"), None);
        assert_eq!(overlap("team/**", "other/**"), None);
        assert_eq!(overlap("team/*", "teams/*"), None);
        assert_eq!(overlap("{web,api}/*", "db/*"), None);
        // Only invalid names would be selected by both: `a_` cannot end a name.
        assert_eq!(overlap("a*", "*_"), None);
        // Upper case never appears in a repository name.
        assert_eq!(overlap("App", "*"), None);
        assert_eq!(overlap("app", "app2"), None);
    }

    #[test]
    fn witnesses_are_selected_by_both_and_valid() {
        let globs = ["**", "team/**", "*/cache", "t*m/*", "{a,b}/**/c", "x?z", "**/v[0-9]"];
        for a in globs {
            for b in globs {
                if let Some(name) = overlap(a, b) {
                    assert!(selects(a, &name) && selects(b, &name), "{a} {b} {name}");
                    crate::validate_repository_name(&name).expect("a valid name");
                }
            }
        }
    }

    fn arb_glob() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let parts = ["a", "b", "ab", "/", "*", "**", "?", "-", "{a,b}", "[ab]", "a/", "/b", "."];
        prop::collection::vec(prop::sample::select(parts.to_vec()), 1..6).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        /// The overlap check is exact on generated globs: its witness is
        /// selected by both, and when it finds none, no generated valid
        /// name is selected by both.
        #[test]
        fn the_overlap_check_agrees_with_matching(
            a in arb_glob(),
            b in arb_glob(),
            names in proptest::collection::vec("[ab]{1,2}([-._][ab]{1,2})?(/[ab]{1,3}){0,2}", 1..40),
        ) {
            let (Ok(sa), Ok(sb)) = (Selector::parse(&a), Selector::parse(&b)) else {
                return Ok(());
            };
            match sa.overlap(&sb).expect("small globs are decidable") {
                Some(name) => {
                    proptest::prop_assert!(sa.is_match(&name) && sb.is_match(&name));
                    proptest::prop_assert!(crate::validate_repository_name(&name).is_ok());
                }
                None => {
                    for name in names.iter().filter(|n| crate::validate_repository_name(n).is_ok()) {
                        proptest::prop_assert!(!(sa.is_match(name) && sb.is_match(name)), "{name}");
                    }
                }
            }
        }
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

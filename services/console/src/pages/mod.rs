//! One module per page.

pub mod deletions;
pub mod jobs;
pub mod overview;
pub mod policies;
pub mod policy_form;
pub mod registries;
pub mod repositories;
pub mod rule_rows;
pub mod sign_in;
pub mod workers;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::view;

pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, view::error_page(StatusCode::NOT_FOUND, "no such page")).into_response()
}

/// A redirect target that stays on this console: a path, never another
/// origin (`//host`, `https://...`).
pub fn local_path(next: Option<&str>) -> &str {
    // Browsers drop tabs and newlines from a URL (`/\t/evil` is `//evil`)
    // and read `\` as `/`: a path with any of them is refused whole.
    let plain = |p: &str| !p.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && plain(p) => p,
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn redirects_stay_on_the_console() {
        assert_eq!(local_path(Some("/jobs?status=running")), "/jobs?status=running");
        for bad in [
            "//evil.test",
            "https://evil.test",
            "/\\evil.test",
            "jobs",
            "/\t/evil.test",
            "/\n/evil.test",
            "/ /x",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }
}

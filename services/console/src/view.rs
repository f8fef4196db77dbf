//! The page frame and the small pieces every page shows the same way.

use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::session::Caller;

/// The pages in the navigation, in order: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/policies", "Policies"),
    ("/repositories", "Repositories"),
    ("/deletions", "Deletions"),
    ("/jobs", "Jobs"),
    ("/workers", "Workers"),
    ("/registries", "Registries"),
];

/// A whole page: navigation, the caller's sign-in state, and `body`.
pub fn page(caller: &Caller, active: &str, title: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · regsweep" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    nav aria-label="main" {
                        span.brand { "regsweep" }
                        @for (path, label) in NAV {
                            @if *path == active {
                                a href=(path) aria-current="page" { (label) }
                            } @else {
                                a href=(path) { (label) }
                            }
                        }
                    }
                    @if caller.signed_in() {
                        form.signout method="post" action="/sign-out" {
                            (csrf_field(caller))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// An error as a page of its own (no navigation state needed).
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (status.as_u16()) " · regsweep" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
            }
            body {
                main {
                    h1 { (status.canonical_reason().unwrap_or("Error")) }
                    p.error role="alert" { (message) }
                    p { a href="/" { "Back to the overview" } }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// The hidden field every form carries.
pub fn csrf_field(caller: &Caller) -> Markup {
    html! { input type="hidden" name="csrf" value=(caller.csrf.0); }
}

/// A time as its age ("3m ago"), with the exact time on hover.
pub fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        None => html! { span.muted { "—" } },
        Some(at) => html! {
            time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) { (span(now - at)) " ago" }
        },
    }
}

/// A deadline counting down: rendered now, kept current by the script.
pub fn countdown(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match at {
        None => html! { span.muted { "—" } },
        Some(at) => {
            let left = at - now;
            let text = if left <= chrono::Duration::zero() {
                "due".to_string()
            } else {
                format!("in {}", span(left))
            };
            html! { time datetime=(at.to_rfc3339()) title=(at.to_rfc3339()) data-countdown=(at.to_rfc3339()) { (text) } }
        }
    }
}

/// A duration, coarsely: `45s`, `3m 20s`, `5h 2m`, `3d 4h`.
pub fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

pub use regsweep_common::units::bytes;

/// A protobuf timestamp as a time.
pub fn time(ts: Option<&regsweep_proto::pbjson_types::Timestamp>) -> Option<DateTime<Utc>> {
    regsweep_proto::timestamp_to_chrono(ts?)
}

/// An enum's wire name without its prefix, lower case: `pending_delete`.
pub fn state_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

/// A `<select>` of `options` (value, shown), `value` selected; `label`
/// names it for screen readers where no `<label>` does.
pub fn select(
    id: &str,
    name: &str,
    label: Option<&str>,
    value: &str,
    options: &[(&str, &str)],
) -> Markup {
    html! {
        select #(id) name=(name) aria-label=[label] {
            @for (option, shown) in options { option value=(option) selected[*option == value] { (shown) } }
        }
    }
}

/// A state as a badge the stylesheet colours by name.
pub fn badge(name: &str) -> Markup {
    html! { span class=(format!("badge s-{name}")) { (name.replace('_', " ")) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_coarsely() {
        let s = chrono::Duration::seconds;
        assert_eq!(span(s(-5)), "0s");
        assert_eq!(span(s(59)), "59s");
        assert_eq!(span(s(200)), "3m 20s");
        assert_eq!(span(s(5 * 3600 + 120)), "5h 2m");
        assert_eq!(span(s(3 * 86400 + 4 * 3600)), "3d 4h");
    }

    #[test]
    fn text_is_escaped() {
        let markup = html! { p { ("<script>x</script>") } };
        assert_eq!(markup.into_string(), "<p>&lt;script&gt;x&lt;/script&gt;</p>");
    }
}

//! Signing in with a regsweep token, and out.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::html;
use regsweep_proto::v1;
use serde::Deserialize;
use tonic::Code;

use crate::App;
use crate::backend::request;
use crate::error::ConsoleError;
use crate::pages::local_path;
use crate::security::Form;
use crate::session::{self, Caller, TOKEN_COOKIE};
use crate::view;

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

pub async fn form(caller: Caller, Query(q): Query<Next>) -> Response {
    render(&caller, local_path(q.next.as_deref()), None).into_response()
}

fn render(caller: &Caller, next: &str, error: Option<&str>) -> axum::response::Html<String> {
    let body = html! {
        p { "Sign in with a regsweep token (" code { "regsweep tokens create" } "). A "
            code { "read" } " token sees everything and changes nothing." }
        form.signin method="post" action="/sign-in" {
            (view::csrf_field(caller))
            input type="hidden" name="next" value=(next);
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="off" required
                maxlength=(session::MAX_TOKEN_LEN) aria-describedby=[error.map(|_| "signin-error")];
            button type="submit" { "Sign in" }
        }
        @if let Some(error) = error {
            p #signin-error .error role="alert" { (error) }
        }
    };
    view::page(caller, "", "Sign in", body)
}

/// Checks the token with a read call to the scheduler, then keeps it.
pub async fn submit(State(app): State<App>, caller: Caller, body: Bytes) -> Response {
    let form = match Form::verified(&caller, &body) {
        Ok(form) => form,
        Err(e) => return e.into_response(),
    };
    let next = local_path(form.get("next")).to_string();
    let token = form.get("token").unwrap_or("").trim();
    if !session::well_formed(token) {
        let page = render(&caller, &next, Some("a token is printable text without spaces"));
        return (StatusCode::BAD_REQUEST, page).into_response();
    }
    let probe = v1::ListWorkersRequest { page_size: 1, ..Default::default() };
    let answer = app.backend.jobs().list_workers(request(&caller.with_token(token), probe)).await;
    let refused = match answer {
        Ok(_) => None,
        Err(s) if s.code() == Code::Unauthenticated => {
            Some((StatusCode::UNAUTHORIZED, "the scheduler does not know this token".to_string()))
        }
        Err(s) if s.code() == Code::PermissionDenied => Some((
            StatusCode::FORBIDDEN,
            "this token may not read (it needs the read or admin role)".to_string(),
        )),
        Err(s) => return ConsoleError::Service(s).into_response(),
    };
    if let Some((status, message)) = refused {
        tracing::info!(%status, "sign-in refused");
        return (status, render(&caller, &next, Some(&message))).into_response();
    }
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, next)]).into_response();
    app.cookies.append(response.headers_mut(), TOKEN_COOKIE, Some(token));
    response
}

pub async fn sign_out(State(app): State<App>, caller: Caller, body: Bytes) -> Response {
    if let Err(e) = Form::verified(&caller, &body) {
        return e.into_response();
    }
    let mut response = (StatusCode::SEE_OTHER, [(LOCATION, "/sign-in")]).into_response();
    app.cookies.append(response.headers_mut(), TOKEN_COOKIE, None);
    response
}

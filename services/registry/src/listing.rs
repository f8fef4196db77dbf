//! Listing calls: the catalog (one page at a time, for the caller to
//! pace) and the tags of a repository (every page).

use reqwest::{Method, Response, StatusCode};

use crate::Error;
use crate::client::{Client, pull_scope, read_limited, repository_ok, status_error};
use crate::headers::next_link;

/// Largest catalog page asked for: Distribution answers 400
/// PAGINATION_NUMBER_INVALID above its `catalog.maxentries` (1000 by
/// default), and a short page is always allowed.
const MAX_CATALOG_PAGE: u32 = 1000;
/// Largest page of names read. Distribution 2.8 ignores `n` on tag lists
/// and answers every tag of a repository at once.
const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;
/// Most pages followed for one tag list.
const MAX_PAGES: usize = 100_000;

impl Client {
    #[tracing::instrument(level = "debug", skip_all, fields(registry = %self.base_url()))]
    pub async fn ping(&self) -> Result<(), Error> {
        let response = self.send(&self.call(Method::GET, "/v2/", String::new())?).await?;
        if response.status().is_success() { Ok(()) } else { Err(status_error(response).await) }
    }

    /// One page of the catalog and the cursor of the next (`None` at the
    /// end). The cursor is the whole next-page URL the registry linked,
    /// followed as given: registries with opaque cursors page correctly.
    #[tracing::instrument(level = "debug", skip_all, fields(n, cursor = cursor.unwrap_or_default()))]
    pub async fn catalog_page(
        &self,
        n: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), Error> {
        let mut call = self.call(Method::GET, "/v2/_catalog", "registry:catalog:*".into())?;
        match cursor {
            Some(next) => call.url = self.same_origin(next)?,
            // Distribution answers an empty last page to `n=0`: never ask for it.
            None => {
                let n = n.clamp(1, MAX_CATALOG_PAGE);
                call.url.query_pairs_mut().append_pair("n", &n.to_string());
            }
        }
        let response = self.send(&call).await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let next = self.next_page(&response)?.map(String::from);
        let body = read_limited(response, MAX_LIST_BYTES, "catalog page").await?;
        let names = string_list(&body, "repositories")?;
        Ok((names, next))
    }

    /// The next page's URL from the `Link` header, when there is one. It
    /// must stay on the registry's origin: credentials go with it.
    fn next_page(&self, response: &Response) -> Result<Option<url::Url>, Error> {
        let Some(link) = response.headers().get("link").and_then(|l| l.to_str().ok()) else {
            return Ok(None);
        };
        next_link(link).map(|target| self.same_origin(&target)).transpose()
    }

    /// `target` (absolute, or relative to the registry) if it is on the
    /// registry's own origin.
    fn same_origin(&self, target: &str) -> Result<url::Url, Error> {
        let base = &self.inner.base;
        let url = base
            .join(target)
            .map_err(|e| Error::InvalidResponse(format!("next page link {target:?}: {e}")))?;
        if url.origin() != base.origin() {
            return Err(Error::InvalidResponse(format!(
                "next page link leaves the registry: {target:?}"
            )));
        }
        Ok(url)
    }

    /// Every tag of `repository`, following pages.
    #[tracing::instrument(level = "debug", skip_all, fields(repository = %repository))]
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, Error> {
        repository_ok(repository)?;
        let mut tags = Vec::new();
        let mut page: Option<url::Url> = None;
        for _ in 0..MAX_PAGES {
            let mut call = self.call(
                Method::GET,
                &format!("/v2/{repository}/tags/list"),
                pull_scope(repository),
            )?;
            match &page {
                // The registry's own link, whole: its cursor may be opaque.
                Some(url) => call.url = url.clone(),
                None => {
                    let n = self.inner.config.tags_page_size.max(1);
                    call.url.query_pairs_mut().append_pair("n", &n.to_string());
                }
            }
            let response = self.send(&call).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(Error::NotFound(format!("repository {repository}")));
            }
            if !response.status().is_success() {
                return Err(status_error(response).await);
            }
            let next = self.next_page(&response)?;
            let body = read_limited(response, MAX_LIST_BYTES, "tag list").await?;
            tags.extend(string_list(&body, "tags")?);
            match next {
                // A registry that sends us back where we were would loop.
                Some(next) if page.as_ref() != Some(&next) => page = Some(next),
                _ => return Ok(tags),
            }
        }
        Err(Error::InvalidResponse(format!("more than {MAX_PAGES} pages of tags")))
    }
}

/// `{"<key>": ["a", "b"]}`, where `null` means none.
fn string_list(body: &[u8], key: &str) -> Result<Vec<String>, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidResponse(format!("{key} list: {e}")))?;
    match value.get(key) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::InvalidResponse(format!("{key}: not a string")))
            })
            .collect(),
        Some(_) => Err(Error::InvalidResponse(format!("{key} is not a list"))),
    }
}

//! Digests clients mark as in use. Each holder's marks are its own and
//! lapse at their expiry; reads see only live marks, by the scheduler's
//! clock. The statements are written once for both stores (see
//! `engines`); a request's marks go in one statement (`Dialect::zipped`).

use chrono::{DateTime, Utc};

/// One request's marks.
#[derive(Clone, Copy, Debug)]
pub struct InUseMarks<'a> {
    pub registry_id: i64,
    pub holder: &'a str,
    /// (repository, digest), each at most once.
    pub images: &'a [(String, String)],
    /// The scheduler's clock.
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Release the holder's other marks on the registry.
    pub replace: bool,
}

/// What a request changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarkOutcome {
    pub marked: u64,
    pub released: u64,
}

/// A live mark: the longest-lasting holder of one digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveMark {
    pub digest: String,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

/// A mark made again moves its expiry to the new one, earlier or later:
/// the holder says how long it needs it.
pub(crate) const UPSERT: &str = "ON CONFLICT (registry_id, repository, digest, holder) DO UPDATE SET expires_at = excluded.expires_at";

/// Removes the registry's lapsed marks (`$1` registry, `$2` now).
pub(crate) const PRUNE: &str =
    "DELETE FROM in_use_marks WHERE registry_id = $1 AND expires_at <= $2";

/// Releases the holder's marks not refreshed by this request: `$3` is the
/// new expiry every refreshed mark now has. A mark refreshed to an
/// identical expiry by a concurrent request of the same holder survives,
/// which is what that request asked.
pub(crate) const RELEASE_OTHERS: &str =
    "DELETE FROM in_use_marks WHERE registry_id = $1 AND holder = $2 AND expires_at <> $3";

/// The live marks of one repository, one row per digest: the holder whose
/// mark lasts longest (`$1` registry, `$2` repository, `$3` now, `$4`
/// limit).
pub(crate) const LIVE: &str = "SELECT digest, holder, expires_at FROM in_use_marks m
     WHERE registry_id = $1 AND repository = $2 AND expires_at > $3
       AND NOT EXISTS (SELECT 1 FROM in_use_marks o
                       WHERE o.registry_id = m.registry_id AND o.repository = m.repository
                         AND o.digest = m.digest AND o.expires_at > $3
                         AND (o.expires_at > m.expires_at
                              OR (o.expires_at = m.expires_at AND o.holder < m.holder)))
     ORDER BY digest
     LIMIT $4";

crate::store::engines::per_engine! {
    use crate::store::StoreError;

    /// Makes one request's marks, in one transaction: lapsed marks pruned,
    /// the request's upserted, and its holder's others released if asked.
    pub async fn mark(
        writer: &sqlx::Pool<DB>,
        m: InUseMarks<'_>,
    ) -> Result<MarkOutcome, StoreError> {
        let (repositories, digests): (Vec<&str>, Vec<&str>) =
            m.images.iter().map(|(r, d)| (r.as_str(), d.as_str())).unzip();
        let images = DIALECT.zipped("i", &[("repository", "text"), ("digest", "text")], 2);
        // `WHERE true`: SQLite reads an upsert's `ON` after a `FROM` as a
        // join's without it.
        let sql = format!(
            "INSERT INTO in_use_marks (registry_id, repository, digest, holder, expires_at)
             SELECT $1, i.repository, i.digest, $4, $5 FROM {images} WHERE true
             {UPSERT}"
        );
        let mut tx = begin_write(writer).await?;
        sqlx::query(PRUNE).bind(m.registry_id).bind(time(m.now)).execute(&mut *tx).await?;
        let marked = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(m.registry_id)
            .bind(column(repositories))
            .bind(column(digests))
            .bind(m.holder)
            .bind(time(m.expires_at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let released = if m.replace {
            sqlx::query(RELEASE_OTHERS)
                .bind(m.registry_id)
                .bind(m.holder)
                .bind(time(m.expires_at))
                .execute(&mut *tx)
                .await?
                .rows_affected()
        } else {
            0
        };
        tx.commit().await?;
        Ok(MarkOutcome { marked, released })
    }

    /// The live marks of one repository (`LIVE`).
    pub async fn live<'e>(
        exec: impl sqlx::Executor<'e, Database = DB>,
        registry_id: i64,
        repository: &'e str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<LiveMark>, StoreError> {
        let rows: Vec<(String, String, Time)> = sqlx::query_as(LIVE)
            .bind(registry_id)
            .bind(repository)
            .bind(time(now))
            .bind(i64::from(limit))
            .fetch_all(exec)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(digest, holder, expires_at)| LiveMark {
                digest,
                holder,
                expires_at: read_time(expires_at),
            })
            .collect())
    }
}

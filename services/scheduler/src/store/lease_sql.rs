//! Named leases (leadership, and the fence of leader-only writes), written
//! once for both stores (see `engines`).

use std::time::Duration;

use uuid::Uuid;

use crate::store::engines::per_engine;
use crate::store::{Fence, StoreError};

per_engine! {
    /// Takes or renews lease `name` for `holder` until `lease` from now;
    /// false when another holds it unexpired.
    pub async fn try_lease(
        conn: &mut Connection,
        name: &str,
        holder: Uuid,
        lease: Duration,
        now: Option<Time>,
    ) -> Result<bool, StoreError> {
        let now_sql = DIALECT.now(4);
        let sql = format!(
            "INSERT INTO leases (name, holder, acquired_at, expires_at)
             VALUES ($1, $2, {now_sql}, {})
             ON CONFLICT (name) DO UPDATE SET
                 holder = excluded.holder,
                 expires_at = excluded.expires_at,
                 acquired_at = CASE WHEN leases.holder = excluded.holder
                                    THEN leases.acquired_at ELSE excluded.acquired_at END
             WHERE leases.holder = excluded.holder OR leases.expires_at < {now_sql}
             RETURNING holder",
            DIALECT.after(&now_sql, "$3"),
        );
        let mut query = sqlx::query_as::<_, (Uuid,)>(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(span(lease));
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_optional(&mut *conn).await?.is_some())
    }

    /// Gives lease `name` up if `holder` holds it.
    pub async fn release_lease(
        conn: &mut Connection,
        name: &str,
        holder: Uuid,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Whether `fence.holder` holds `fence.lease` now. The lease cannot
    /// change hands before `conn`'s transaction ends: PostgreSQL locks its
    /// row (`FOR SHARE`); SQLite's one writer runs one transaction at a time.
    pub async fn holds(
        conn: &mut Connection,
        fence: Fence,
        now: Option<Time>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires_at > {}{}",
            DIALECT.now(3),
            DIALECT.share_lock(),
        );
        let mut query = sqlx::query_as::<_, (i32,)>(sqlx::AssertSqlSafe(sql))
            .bind(fence.lease)
            .bind(fence.holder);
        if let Some(now) = now {
            query = query.bind(now);
        }
        Ok(query.fetch_optional(&mut *conn).await?.is_some())
    }
}

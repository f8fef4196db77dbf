//! What the two SQL engines spell differently, for statements written
//! once. Everything else in a shared statement is common SQL with `$n`
//! placeholders, which both drivers bind by number.

/// The two SQL engines, for what they spell differently.
#[derive(Clone, Copy, Debug)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// PostgreSQL's text of the statement's time in an attempt error
/// (`at`), RFC 3339 in UTC as the SQLite store writes it.
pub const POSTGRES_ERROR_TIME: &str =
    "to_char(store_now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

impl Dialect {
    /// `{row}errors` with an entry for the row's attempt appended:
    /// `{"attempt", "error": error, "at": at}`.
    pub(crate) fn append_error(self, row: &str, error: &str, at: &str) -> String {
        match self {
            Dialect::Postgres => format!(
                "{row}errors || jsonb_build_array(jsonb_build_object(
                     'attempt', {row}attempt, 'error', ({error})::text, 'at', {at}))"
            ),
            Dialect::Sqlite => format!(
                "json_insert({row}errors, '$[#]',
                     json_object('attempt', {row}attempt, 'error', {error}, 'at', {at}))"
            ),
        }
    }

    /// What locks the rows a read will change until the transaction ends:
    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose one writer
    /// holds the database for the whole transaction.
    pub fn row_lock(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }

    /// The statement's time: PostgreSQL's clock (`store_now()`, see the
    /// `0014_store_clock` migration), or on SQLite the store's clock bound
    /// as parameter `n`.
    pub(crate) fn now(self, n: usize) -> String {
        match self {
            Dialect::Postgres => "store_now()".into(),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// A row's next version (`updated_at`, its etag): `now`, or a tick
    /// past the last version when the clock has not moved past it.
    pub(crate) fn next_version(self, now: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!("greatest({now}, updated_at + interval '1 microsecond')")
            }
            Dialect::Sqlite => format!("max({now}, updated_at + 1)"),
        }
    }

    /// Parameter `n` holding a time, typed where it may be NULL (PostgreSQL
    /// cannot infer the type of `$n IS NULL`).
    pub(crate) fn time_parameter(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}::timestamptz"),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// Seconds from the time `since` to the time `now`, as a float.
    pub(crate) fn seconds_since(self, now: &str, since: &str) -> String {
        match self {
            Dialect::Postgres => format!("EXTRACT(EPOCH FROM {now} - {since})::float8"),
            Dialect::Sqlite => format!("({now} - {since}) / 1e6"),
        }
    }

    /// The time `span` (a bound span, see `engines`) after `now`.
    pub(crate) fn after(self, now: &str, span: &str) -> String {
        match self {
            Dialect::Postgres => format!("{now} + make_interval(secs => {span})"),
            Dialect::Sqlite => format!("{now} + {span}"),
        }
    }

    /// What keeps the rows a read found from changing (not from being read)
    /// until the transaction ends: `FOR SHARE` on PostgreSQL; nothing on
    /// SQLite, whose one writer holds the database for the whole transaction.
    pub(crate) fn share_lock(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR SHARE",
            Dialect::Sqlite => "",
        }
    }

    /// The wall clock as the statement runs, not its transaction's start:
    /// PostgreSQL's `store_clock()`, or on SQLite the store's clock bound as
    /// parameter `n` (its one writer runs one transaction at a time).
    pub(crate) fn clock(self, n: usize) -> String {
        match self {
            Dialect::Postgres => "store_clock()".into(),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// The time `span` (a bound span, see `engines`) before `now`.
    pub(crate) fn before(self, now: &str, span: &str) -> String {
        match self {
            Dialect::Postgres => format!("{now} - make_interval(secs => {span})"),
            Dialect::Sqlite => format!("{now} - {span}"),
        }
    }

    /// The `at` of an attempt error written now: PostgreSQL's clock as
    /// text, or on SQLite the text of the store's clock bound as
    /// parameter `n` (`engines`' `error_time`).
    pub(crate) fn error_time(self, n: usize) -> String {
        match self {
            Dialect::Postgres => POSTGRES_ERROR_TIME.into(),
            Dialect::Sqlite => format!("${n}"),
        }
    }

    /// Parameter `param` as text, where PostgreSQL cannot infer its type
    /// (a `CASE` branch).
    pub(crate) fn text(self, param: &str) -> String {
        match self {
            Dialect::Postgres => format!("{param}::text"),
            Dialect::Sqlite => param.into(),
        }
    }

    /// The JSON object of `key` -> `value` over a group's rows.
    pub(crate) fn json_object_agg(self, key: &str, value: &str) -> String {
        match self {
            Dialect::Postgres => format!("jsonb_object_agg({key}, {value})"),
            Dialect::Sqlite => format!("json_group_object({key}, {value})"),
        }
    }

    /// An empty JSON object.
    pub(crate) fn empty_json_object(self) -> &'static str {
        match self {
            Dialect::Postgres => "'{}'::jsonb",
            Dialect::Sqlite => "'{}'",
        }
    }

    /// The JSON object `target` with the keys of the object `patch` set.
    pub(crate) fn json_merge(self, target: &str, patch: &str) -> String {
        match self {
            Dialect::Postgres => format!("{target} || {patch}"),
            Dialect::Sqlite => format!("json_patch({target}, {patch})"),
        }
    }

    /// Membership in the list of ids bound as parameter `n` (see
    /// `engines`' `ids_column`): a PostgreSQL array, a SQLite JSON array.
    pub(crate) fn in_list(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("= ANY(${n})"),
            Dialect::Sqlite => format!("IN (SELECT value FROM json_each(${n}))"),
        }
    }

    /// A relation `alias(columns)` whose rows zip equally long lists bound
    /// as parameters `first`, `first + 1`, ... (see `engines`' `column`),
    /// one per column given with its PostgreSQL type: `unnest` of arrays on
    /// PostgreSQL, JSON arrays joined by index on SQLite. A batch in one
    /// statement on both.
    pub(crate) fn zipped(self, alias: &str, columns: &[(&str, &str)], first: usize) -> String {
        match self {
            Dialect::Postgres => {
                let arrays: Vec<String> = (0..columns.len())
                    .map(|i| format!("${}::{}[]", first + i, columns[i].1))
                    .collect();
                let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
                format!("unnest({}) AS {alias}({})", arrays.join(", "), names.join(", "))
            }
            Dialect::Sqlite => {
                let values: Vec<String> =
                    (0..columns.len()).map(|i| format!("c{i}.value AS {}", columns[i].0)).collect();
                let joins: String = (1..columns.len())
                    .map(|i| format!(" JOIN json_each(${}) c{i} ON c{i}.key = c0.key", first + i))
                    .collect();
                format!(
                    "(SELECT {} FROM json_each(${first}) c0{joins}) AS {alias}",
                    values.join(", ")
                )
            }
        }
    }

    /// `row_lock` for rows no other transaction holds; rows another holds
    /// are skipped, not waited for (a replica that still believes it leads
    /// takes other rows, or none). SQLite's one writer needs neither.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }

    /// `row_lock` for the rows of `table` alone in a join.
    pub(crate) fn row_lock_of(self, table: &str) -> String {
        match self {
            Dialect::Postgres => format!(" FOR UPDATE OF {table}"),
            Dialect::Sqlite => String::new(),
        }
    }
}

/// Whether a write failed on a unique constraint (a name taken): both
/// drivers report it as the same kind.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().map(|d| d.kind()) == Some(sqlx::error::ErrorKind::UniqueViolation)
}

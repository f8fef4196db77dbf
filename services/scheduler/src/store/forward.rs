//! One macro for the store trait impls that only pass calls on: each store
//! maps an operation to the function that implements it, and the metrics
//! decorator wraps each operation in a timer. Written by hand, the three
//! layers were ~860 lines of signatures repeated around one-line bodies;
//! here each operation is one line per layer, and the compiler still checks
//! every line against the trait.
//!
//! The macro writes the whole `impl` block, attribute included, because
//! `#[async_trait]` rewrites the `async fn`s it sees: an `async fn` expanded
//! from a macro inside an already-rewritten block would not match the trait.

/// Writes `impl $trait for $type` where each listed operation forwards.
///
/// * `via |s| expr`: each operation calls `path(expr, args...)`, with `s`
///   bound to `&self` (a store's own functions take its pool or the store).
/// * `timed`: each operation calls the wrapped store's method of the same
///   name inside `regsweep_common::prometheus::timed`, labelled with its
///   name (the metrics decorator).
///
/// Operations whose body is more than a call go in a trailing `{ ... }`,
/// written out as ordinary trait items.
macro_rules! store_impl {
    (
        impl $trait:ident for $type:ty, via |$s:ident| $via:expr;
        $( fn $name:ident($($arg:ident: $argty:ty),* $(,)?) -> $ret:ty => $target:path; )*
        $({ $($extra:tt)* })?
    ) => {
        #[async_trait::async_trait]
        impl $trait for $type {
            $(
                async fn $name(&self, $($arg: $argty),*) -> Result<$ret, StoreError> {
                    let $s = self;
                    $target($via, $($arg),*).await
                }
            )*
            $($($extra)*)?
        }
    };
    (
        impl $trait:ident for $type:ty, timed;
        $( fn $name:ident($($arg:ident: $argty:ty),* $(,)?) -> $ret:ty; )*
        $({ $($extra:tt)* })?
    ) => {
        #[async_trait::async_trait]
        impl $trait for $type {
            $(
                async fn $name(&self, $($arg: $argty),*) -> Result<$ret, StoreError> {
                    regsweep_common::prometheus::timed(stringify!($name), self.0.$name($($arg),*))
                        .await
                }
            )*
            $($($extra)*)?
        }
    };
}

pub(crate) use store_impl;

-- How a repository's cleanup ends is decided in Rust
-- (`store::cleanup_end`), by the leader's selection tick, which closes
-- every `ongoing` cleanup whose job ended. The store announces a
-- tag_cleanup job's end after its commit, which wakes the tick.
DROP TRIGGER jobs_cleanup_ended;
DROP TRIGGER jobs_cleanup_reclaim;

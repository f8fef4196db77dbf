//! Precedence among a registry's policies: the highest priority whose
//! selector matches governs a repository, overlapping policies at one
//! priority are refused and change nothing, repositories say why they have
//! their policy, and policies from before priorities keep "oldest wins".

use std::collections::BTreeMap;

use regsweep_integration_tests::db::Store;
use regsweep_integration_tests::{Scheduler, TestDb, TestRegistry, Worker};
use regsweep_proto::v1;
use sqlx::{AssertSqlSafe, Connection};
use tonic::Code;
use tonic_types::StatusExt;

use crate::policies::{create_registry, repositories, sync};

fn policy(name: &str, selector: &str, priority: i32) -> v1::Policy {
    v1::Policy {
        name: name.into(),
        registry: "local".into(),
        repository_selector: selector.into(),
        cadence: "7d".into(),
        keep_n: 5,
        priority,
        ..Default::default()
    }
}

async fn create(scheduler: &Scheduler, policy: v1::Policy) -> Result<v1::Policy, tonic::Status> {
    let request =
        v1::CreatePolicyRequest { policy: Some(policy), live: false, ..Default::default() };
    let created = scheduler.policies().await.create_policy(request).await?;
    Ok(created.into_inner().policy.expect("policy"))
}

async fn set_priority(
    scheduler: &Scheduler,
    name: &str,
    priority: i32,
) -> Result<(), tonic::Status> {
    let request = v1::UpdatePolicyRequest {
        policy: Some(v1::Policy { name: name.into(), priority, ..Default::default() }),
        update_mask: vec!["priority".into()],
        ..Default::default()
    };
    scheduler.policies().await.update_policy(request).await.map(drop)
}

/// The refusal's field violations as (field, description).
fn refusal(status: &tonic::Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_details_bad_request().expect("field violations");
    details.field_violations.into_iter().map(|v| (v.field, v.description)).collect()
}

/// Each repository's (policy, reason).
async fn governance(scheduler: &Scheduler) -> BTreeMap<String, (String, String)> {
    let listed = repositories(scheduler).await;
    listed.into_iter().map(|r| (r.name, (r.policy, r.policy_reason))).collect()
}

async fn policies(scheduler: &Scheduler) -> BTreeMap<String, (String, i32)> {
    let listed = scheduler
        .policies()
        .await
        .list_policies(v1::ListPoliciesRequest::default())
        .await
        .expect("list policies")
        .into_inner()
        .policies;
    listed.into_iter().map(|p| (p.name, (p.repository_selector, p.priority))).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_highest_priority_governs_and_overlaps_at_one_priority_are_refused() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    create_registry(&scheduler, "local", &registry.url()).await;
    for repo in ["team/app", "team/cache", "other/app"] {
        registry.push_image(repo, &["v1"], None, repo).await;
    }
    sync(&scheduler, "local").await;

    create(&scheduler, policy("all", "**", 0)).await.expect("first policy");
    let refused = create(&scheduler, policy("team", "team/**", 0)).await.expect_err("overlap");
    assert_eq!(
        refusal(&refused),
        vec![(
            "policy.priority".to_string(),
            r#"overlaps policy "all" at priority 0: both select "team/a"; give one of them a different priority"#
                .to_string()
        )]
    );
    let only_all = BTreeMap::from([("all".to_string(), ("**".to_string(), 0))]);
    assert_eq!(policies(&scheduler).await, only_all, "a refused policy is not stored");

    create(&scheduler, policy("team", "team/**", 10)).await.expect("a higher priority");
    let refused = create(&scheduler, policy("cache", "**/cache", 10)).await.expect_err("overlap");
    assert!(refusal(&refused)[0].1.contains(r#""team" at priority 10: both select "team/cache""#));
    create(&scheduler, policy("cache", "**/cache", 20)).await.expect("the highest priority");
    // Disjoint selectors may share a priority.
    create(&scheduler, policy("other", "other/*/deep", 10)).await.expect("disjoint");

    let governed = governance(&scheduler).await;
    let team = &governed["team/app"];
    assert_eq!(team.0, "team");
    assert_eq!(team.1, r#"selector "team/**" at priority 10, above "all" (priority 0)"#);
    let cache = &governed["team/cache"];
    assert_eq!(cache.0, "cache");
    assert_eq!(
        cache.1,
        r#"selector "**/cache" at priority 20, above "team" (priority 10), "all" (priority 0)"#
    );
    assert_eq!(governed["other/app"].0, "all");
    assert_eq!(
        governed["other/app"].1,
        r#"selector "**" at priority 0, the only policy that selects it"#
    );

    // Lowering a priority reassigns at once; an update into an overlap is
    // refused and changes nothing.
    set_priority(&scheduler, "team", -1).await.expect("lower");
    assert_eq!(governance(&scheduler).await["team/app"].0, "all");
    let refused = set_priority(&scheduler, "all", -1).await.expect_err("overlap");
    assert!(refusal(&refused)[0].1.contains(r#"policy "team" at priority -1"#));
    assert_eq!(policies(&scheduler).await["all"], ("**".to_string(), 0));
    let refused = set_priority(&scheduler, "all", 1_000_001).await.expect_err("out of range");
    assert_eq!(refusal(&refused)[0].0, "policy.priority");
    assert_eq!(governance(&scheduler).await["team/app"].0, "all");
}

/// The migration that introduced priorities, run on policies written
/// before it: the oldest policy of each registry still governs.
#[tokio::test]
async fn policies_from_before_priorities_keep_oldest_wins() {
    let db = TestDb::create().await;
    let (dir, pg) = match db.store {
        Store::Postgres => ("postgres", true),
        Store::Sqlite => ("sqlite", false),
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../services/scheduler/migrations/");
    let mut files: Vec<_> = std::fs::read_dir(format!("{root}{dir}"))
        .expect("migrations")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let (before, from) = {
        let at = files.iter().position(|f| f.to_string_lossy().ends_with("_policy_priority.sql"));
        files.split_at(at.expect("the priority migration"))
    };
    let sql = |path: &std::path::PathBuf| std::fs::read_to_string(path).expect("read migration");
    let now = if pg { "now()" } else { "0" };
    let seed = format!(
        "INSERT INTO registries (name, url, created_at, updated_at)
             VALUES ('a', 'http://a', {now}, {now}), ('b', 'http://b', {now}, {now});
         INSERT INTO policies (name, registry_id, repository_selector, cadence, next_run_at,
             created_at, updated_at)
             VALUES ('a-old', 1, '**', '1d', {now}, {now}, {now}),
                    ('b-only', 2, '**', '1d', {now}, {now}, {now}),
                    ('a-mid', 1, 'team/**', '1d', {now}, {now}, {now}),
                    ('a-new', 1, '**', '1d', {now}, {now}, {now});"
    );
    let priorities: Vec<(String, i32)> = if pg {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        sqlx::raw_sql("CREATE SCHEMA m; SET search_path TO m").execute(&mut conn).await.unwrap();
        for file in before {
            sqlx::raw_sql(AssertSqlSafe(sql(file))).execute(&mut conn).await.expect("migrate");
        }
        sqlx::raw_sql(AssertSqlSafe(seed)).execute(&mut conn).await.expect("seed");
        sqlx::raw_sql(AssertSqlSafe(sql(&from[0]))).execute(&mut conn).await.expect("migrate");
        sqlx::query_as("SELECT name, priority FROM policies ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("read")
    } else {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:").await.expect("open");
        for file in before {
            sqlx::raw_sql(AssertSqlSafe(sql(file))).execute(&mut conn).await.expect("migrate");
        }
        sqlx::raw_sql(AssertSqlSafe(seed)).execute(&mut conn).await.expect("seed");
        sqlx::raw_sql(AssertSqlSafe(sql(&from[0]))).execute(&mut conn).await.expect("migrate");
        sqlx::query_as("SELECT name, priority FROM policies ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .expect("read")
    };
    let expected = [("a-old", 2), ("b-only", 0), ("a-mid", 1), ("a-new", 0)];
    let expected: Vec<(String, i32)> = expected.iter().map(|(n, p)| (n.to_string(), *p)).collect();
    assert_eq!(priorities, expected);
}

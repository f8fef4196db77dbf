//! Policies as code, through the `regsweep` binary against a real
//! scheduler, worker and registry: `apply` creates and updates, is
//! idempotent, orders writes around priority overlaps and through swaps
//! (what each step may delete is the property test of `apply/steps.rs`),
//! refuses a bad file with its line and changes nothing; `export | apply
//! --diff` shows no change; `--diff` previews what a change would delete;
//! the schema accepts what `export` writes.

use std::path::Path;
use std::process::Output;

use regsweep_integration_tests::db::{hold_rows, wait_held};
use regsweep_integration_tests::{Scheduler, TestDb, TestRegistry, Worker};
use regsweep_proto::v1;

use crate::cli::regsweep;
use crate::outside_clients::{venv_tool, workspace};
use crate::policies::sync;

/// The registry and two policies every file below starts from.
fn base(url: &str) -> String {
    format!(
        "registries:
  - name: local
    url: {url}
policies:
  - name: everything
    registry: local
    selector: '**'
    cadence: 1d
    keep_n: 1
    name_regex_delete: '.*'
  - name: team
    registry: local
    selector: 'team/**'
    priority: 10
    cadence: 7d
    rules:
      - name: versions
        tag_glob: 'v*'
        keep_newest: 1
"
    )
}

/// `base` with a live policy `web` at team's old priority, and `team`
/// moved to 20.
fn with_web(base: &str) -> String {
    let web = "  - name: web\n    registry: local\n    selector: 'team/*'\n    priority: 10\n    cadence: 1d\n    live: true\n    keep_n: 5\n";
    base.replace("policies:\n", &format!("policies:\n{web}"))
        .replace("priority: 10\n    cadence: 7d", "priority: 20\n    cadence: 7d")
}

/// `with_web`'s file with `everything` and `team` swapping priorities:
/// five writes (`web` paused, `everything` parked at a free priority,
/// `team`, `everything`, `web` live again).
fn swapped(moved: &str) -> String {
    moved
        .replace(
            "selector: '**'\n    cadence: 1d",
            "selector: '**'\n    priority: 20\n    cadence: 1d",
        )
        .replace("priority: 20\n    cadence: 7d", "priority: 0\n    cadence: 7d")
}

struct Rig {
    scheduler: Scheduler,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn run(&self, args: &[&str]) -> Output {
        regsweep(&self.scheduler.url, args).await
    }

    /// Writes `text` as `name` and applies it with `extra` flags.
    async fn apply(&self, name: &str, text: &str, extra: &[&str]) -> Output {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        let path = path.display().to_string();
        let args: Vec<&str> =
            ["apply", "-f", path.as_str()].into_iter().chain(extra.iter().copied()).collect();
        self.run(&args).await
    }

    async fn export(&self) -> String {
        let out = self.run(&["export"]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    async fn policies(&self) -> Vec<v1::Policy> {
        let mut policies = self.scheduler.policies().await;
        let listed = policies.list_policies(v1::ListPoliciesRequest::default()).await;
        listed.expect("list policies").into_inner().policies
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    stdout
}

fn refused(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(!out.status.success(), "expected a refusal; stdout: {stdout}");
    stderr
}

/// Validates `file` (YAML) against the schema with a JSON Schema validator.
async fn schema_accepts(file: &Path) -> Result<(), String> {
    let schema = workspace().join("schema/regsweep.schema.json");
    let script = "import json, sys, yaml, jsonschema\n\
        jsonschema.validate(yaml.safe_load(open(sys.argv[1])), json.load(open(sys.argv[2])))";
    let out = tokio::process::Command::new(venv_tool("python"))
        .args(["-c", script])
        .arg(file)
        .arg(schema)
        .output()
        .await
        .expect("python");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into()) }
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_is_idempotent_round_trips_with_export_and_refuses_bad_files_whole() {
    let registry = TestRegistry::start().await;
    for tag in ["v1", "v2", "v3"] {
        registry.push_image("team/app", &[tag], None, tag).await;
    }
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let _worker = Worker::start(&scheduler, "w1", &[]).await;
    let rig = Rig { scheduler, dir: tempfile::tempdir().expect("temporary directory") };
    let base = base(&registry.url());

    let out = ok(&rig.apply("a.yaml", &base, &[]).await);
    assert!(
        out.contains(r#"+ registry "local" (create)"#) && out.contains("applied 3 changes"),
        "{out}"
    );
    let policies = rig.policies().await;
    assert_eq!(policies.len(), 2);
    assert!(policies.iter().all(|p| p.dry_run), "policies are dry runs unless the file says live");
    let team = policies.iter().find(|p| p.name == "team").expect("team");
    assert_eq!((team.priority, team.rules.len()), (10, 1));
    sync(&rig.scheduler, "local").await;

    // Idempotent, and what export writes applies as no change.
    assert!(ok(&rig.apply("a.yaml", &base, &[]).await).contains("no changes (3 unchanged)"));
    let exported = rig.export().await;
    let out = ok(&rig.apply("exported.yaml", &exported, &["--diff"]).await);
    assert!(out.contains("no changes (3 unchanged)"), "{out}");
    schema_accepts(&rig.dir.path().join("exported.yaml")).await.expect("schema accepts export");
    schema_accepts(&workspace().join("schema/example.yaml")).await.expect("schema accepts example");

    // Bad files change nothing and name the line.
    let typo = base.replace("    keep_n: 1\n", "    keep: 1\n");
    let e = refused(&rig.apply("typo.yaml", &typo, &[]).await);
    assert!(
        e.contains("typo.yaml") && e.contains("unknown field `keep`") && e.contains("line 9"),
        "{e}"
    );
    assert!(schema_accepts(&rig.dir.path().join("typo.yaml")).await.is_err(), "schema refuses it");
    // A good change written before the bad one would land without the
    // check first: the file's newcomer comes before `team`.
    let newcomer = "  - name: newcomer\n    registry: local\n    selector: 'other/**'\n    priority: 5\n    cadence: 1d\n";
    let bad_regex = base
        .replace("tag_glob: 'v*'", "tag_regex: '('")
        .replace("  - name: team\n", &format!("{newcomer}  - name: team\n"));
    let e = refused(&rig.apply("regex.yaml", &bad_regex, &[]).await);
    assert!(e.contains(r#"regex.yaml:16: policy "team": policy.rules[0].tag_regex"#), "{e}");
    let overlap = format!(
        "{base}  - name: cache\n    registry: local\n    selector: '**/cache'\n    priority: 10\n    cadence: 1d\n"
    );
    let e = refused(&rig.apply("overlap.yaml", &overlap, &[]).await);
    assert!(
        e.contains(r#"overlap.yaml:20: policy "cache": policy.priority: overlaps policy "team" at priority 10: both select "team/cache""#),
        "{e}"
    );
    assert_eq!(rig.export().await, exported, "refused files changed nothing");

    // --diff shows the change and what it would delete now, and changes nothing.
    let two = base.replace("keep_newest: 1", "keep_newest: 2");
    let out = ok(&rig.apply("two.yaml", &two, &["--diff"]).await);
    assert!(out.contains(r#"~ policy "team": rules"#), "{out}");
    assert!(out.contains("team/app: 1 of 3 tags"), "{out}");
    assert_eq!(rig.export().await, exported);
    assert!(ok(&rig.apply("two.yaml", &two, &[]).await).contains("applied 1 change\n"));
    assert!(rig.export().await.contains("keep_newest: 2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_orders_writes_around_overlaps_and_through_a_swap() {
    let registry = TestRegistry::start().await;
    let db = TestDb::create().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let rig = Rig { scheduler, dir: tempfile::tempdir().expect("temporary directory") };
    let base = base(&registry.url());
    ok(&rig.apply("a.yaml", &base, &[]).await);

    // `web` takes team's old priority: written first it would overlap
    // `team`, so apply moves `team` first.
    let moved = with_web(&base);
    ok(&rig.apply("moved.yaml", &moved, &[]).await);
    let priorities: Vec<(String, i32)> =
        rig.policies().await.into_iter().map(|p| (p.name, p.priority)).collect();
    assert_eq!(priorities, [("everything".into(), 0), ("team".into(), 20), ("web".into(), 10)]);

    // Two overlapping policies swap priorities: no order of two writes
    // keeps them apart, so one waits at a free priority. `web`, live, could
    // change hands meanwhile, so it is a dry run until the end.
    let swapped = swapped(&moved);
    let out = ok(&rig.apply("swap.yaml", &swapped, &[]).await);
    let order: Vec<&str> = out.lines().filter(|l| l.starts_with("    ")).collect();
    assert_eq!(
        order,
        [
            r#"    1. policy "web": a dry run while policies move"#,
            r#"    2. policy "everything": a dry run at free priority -1000000, out of another's way"#,
            r#"    3. policy "team": as the file says"#,
            r#"    4. policy "everything": as the file says"#,
            r#"    5. policy "web": as the file says"#,
        ],
        "{out}"
    );
    let policies = rig.policies().await;
    let now: Vec<(&str, i32, bool)> =
        policies.iter().map(|p| (p.name.as_str(), p.priority, p.dry_run)).collect();
    assert_eq!(now, [("everything", 20, true), ("team", 0, true), ("web", 10, false)]);
    assert!(ok(&rig.apply("swap.yaml", &swapped, &[]).await).contains("no changes"));
}

/// An apply interrupted between its writes (Ctrl-C) stops after the write
/// in flight and makes the policies it paused live again where that is
/// safe, or names them; applying the file again finishes. Interrupted
/// during the second of five writes (a trigger makes it take 3 s), it
/// writes nothing after it.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_apply_stops_between_writes_and_says_what_is_paused() {
    let registry = TestRegistry::start().await;
    let db = TestDb::postgres().await;
    let scheduler = Scheduler::start(&db, &[]).await;
    let rig = Rig { scheduler, dir: tempfile::tempdir().expect("temporary directory") };
    let moved = with_web(&base(&registry.url()));
    ok(&rig.apply("moved.yaml", &moved, &[]).await);
    let direct = db.scheduler_pool().await;
    let when = "NEW.name = 'everything' AND NEW.priority < -1";
    hold_rows(&direct, "slow_park", "UPDATE ON policies", when, 3.0).await;
    let path = rig.dir.path().join("swap.yaml");
    std::fs::write(&path, swapped(&moved)).expect("write file");
    let apply = tokio::process::Command::new(regsweep_integration_tests::process::bin("regsweep"))
        .args(["--scheduler", &rig.scheduler.url, "apply", "-f"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run regsweep apply");
    wait_held(&direct, "the second write").await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(apply.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("interrupt");
    let out = apply.wait_with_output().await.expect("apply ends");
    let (stdout, stderr) = text(&out);
    eprintln!("{stderr}");
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("interrupted (2 of 5 writes made"), "{stderr}");
    let policies = rig.policies().await;
    let team = policies.iter().find(|p| p.name == "team").expect("team");
    assert_eq!(team.priority, 20, "nothing was written after the interrupt");
    let everything = policies.iter().find(|p| p.name == "everything").expect("everything");
    assert!(everything.priority < -1 && everything.dry_run, "the write in flight completed");
    // `web` was paused for the order; with policies mid-move it cannot be
    // made live again safely, so it is named: the file lists it live, so
    // applying the file again is the remedy, not a manual update.
    let web = policies.iter().find(|p| p.name == "web").expect("web");
    assert!(web.dry_run, "{web:?}");
    assert!(
        stderr.contains("paused while applying and still dry runs: web; applying the file again"),
        "{stderr}"
    );
    sqlx::raw_sql("DROP TRIGGER slow_park ON policies").execute(&direct).await.expect("drop");
    ok(&rig.apply("swap.yaml", &swapped(&moved), &[]).await);
    let now: Vec<(String, i32, bool)> =
        rig.policies().await.into_iter().map(|p| (p.name, p.priority, p.dry_run)).collect();
    assert_eq!(
        now,
        [("everything".into(), 20, true), ("team".into(), 0, true), ("web".into(), 10, false)]
    );
}

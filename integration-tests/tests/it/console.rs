//! The web console in a real browser (headless Chromium over WebDriver),
//! against real services on PostgreSQL that require tokens, and the real
//! registry: signing in with each role, restoring and approving
//! deletions, a job's log followed live, what a read token and a forged
//! form cannot do, and no errors in the page's console. Screenshots of
//! every page land in `target/console-screenshots`.

use std::time::Duration;

use regsweep_integration_tests::browser::Browser;
use regsweep_integration_tests::{
    Console, Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until,
};
use regsweep_proto::v1::{self, DeletionStatus, JobStatus};

use crate::cli::{json, regsweep};

const READ: &str = "rsw_console_read_0123456789";
const ADMIN: &str = "rsw_console_admin_0123456789";
const WORKER: &str = "rsw_console_worker_0123456789";

fn admin<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {ADMIN}").parse().expect("header value");
    request.metadata_mut().insert("authorization", value);
    request
}

struct Rig {
    registry: TestRegistry,
    scheduler: Scheduler,
    scrubber: Scrubber,
    console: Console,
    _worker: Worker,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        let mut text = String::new();
        for (roles, name, token) in [
            ("read", "reader", READ),
            ("admin", "operator", ADMIN),
            ("worker,scrubber-client", "workers", WORKER),
        ] {
            text.push_str(&format!(
                "{roles} {name} {}\n",
                regsweep_common::auth::hash_line_value(token)
            ));
        }
        std::fs::write(&tokens, text).expect("tokens file");
        let tokens = tokens.to_str().expect("path");
        let registry = TestRegistry::start().await;
        let db = TestDb::create().await;
        let scheduler = Scheduler::start(&db, &["--tokens-file", tokens, "--tick", "200ms"]).await;
        let env = [("REGSWEEP_TOKEN", WORKER)];
        let flags = ["--tokens-file", tokens, "--delay", "1h"];
        let scrubber = Scrubber::start_with_env("scrubber", &db, &scheduler, &flags, &env).await;
        let worker =
            Worker::start_with_env(&scheduler, "worker-1", &["--scrubber", &scrubber.url], &env)
                .await;
        let console = Console::start(&scheduler.url, &scrubber.url).await;
        Self { registry, scheduler, scrubber, console, _worker: worker, _db: db, _dir: dir }
    }

    /// Registry `local`, synced.
    async fn add_registry(&self) {
        let registry =
            v1::Registry { name: "local".into(), url: self.registry.url(), ..Default::default() };
        let request = v1::CreateRegistryRequest { registry: Some(registry), ..Default::default() };
        self.scheduler.registries().await.create_registry(admin(request)).await.expect("registry");
        let sync = v1::SyncRepositoriesRequest { registry: "local".into() };
        let job = self.scheduler.repositories().await.sync_repositories(admin(sync)).await;
        let job = job.expect("sync").into_inner().job.expect("job").id;
        self.job_ends(job).await;
    }

    async fn job_ends(&self, id: i64) -> v1::Job {
        let jobs = self.scheduler.jobs().await;
        wait_until(&format!("job {id} to end"), Duration::from_secs(30), || {
            let mut jobs = jobs.clone();
            async move {
                let job =
                    jobs.get_job(admin(v1::GetJobRequest { id })).await.ok()?.into_inner().job?;
                job.status().is_terminal().then_some(job)
            }
        })
        .await
    }

    /// Creates `policy` live over `repo` and runs it; the cleanup's job.
    async fn clean(&self, name: &str, repo: &str, max_delete_fraction: f64) -> i64 {
        let policy = v1::Policy {
            name: name.into(),
            registry: "local".into(),
            repository_selector: repo.into(),
            cadence: "7d".into(),
            name_regex_delete: "v.*".into(),
            max_delete_fraction,
            ..Default::default()
        };
        let create =
            v1::CreatePolicyRequest { policy: Some(policy), live: true, ..Default::default() };
        self.scheduler.policies().await.create_policy(admin(create)).await.expect("policy");
        let run = v1::RunPolicyRequest { name: name.into() };
        self.scheduler.policies().await.run_policy(admin(run)).await.expect("run");
        let repositories = self.scheduler.repositories().await;
        wait_until(&format!("the cleanup of {repo}"), Duration::from_secs(30), || {
            let mut repositories = repositories.clone();
            async move {
                let listed = repositories
                    .list_repositories(admin(v1::ListRepositoriesRequest::default()))
                    .await
                    .ok()?;
                let found =
                    listed.into_inner().repositories.into_iter().find(|r| r.name == repo)?;
                found.cleanup_finished_at.is_some().then_some(found.last_job_id)
            }
        })
        .await
    }

    /// The deletions of `job` once there are `n` in `status`.
    async fn deletions(&self, job_id: i64, n: usize, status: DeletionStatus) -> Vec<v1::Deletion> {
        let client = self.scrubber.client().await;
        wait_until(&format!("{n} deletions of job {job_id}"), Duration::from_secs(30), || {
            let mut client = client.clone();
            async move {
                let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
                let listed =
                    client.list_deletions(admin(request)).await.ok()?.into_inner().deletions;
                (listed.len() == n && listed.iter().all(|d| d.status() == status)).then_some(listed)
            }
        })
        .await
    }
}

/// Signs in on the sign-in page with `token`; the page it lands on.
async fn sign_in(b: &Browser, console: &str, token: &str) -> String {
    b.goto(&format!("{console}/sign-in")).await;
    b.type_into("#token", token).await;
    b.click("form.signin button").await;
    // Accepted, the form redirects away from the sign-in page.
    b.wait_url(|u| !u.ends_with("/sign-in")).await
}

/// Fails on any error the page's console logged since the last look.
async fn no_console_errors(b: &Browser, page: &str) {
    let errors: Vec<_> =
        b.console_log().await.into_iter().filter(|(level, _)| level == "SEVERE").collect();
    assert!(errors.is_empty(), "{page}: console errors {errors:?}");
}

fn id_of(deletions: &[v1::Deletion], tag: &str) -> i64 {
    let found = deletions.iter().find(|d| d.image.as_ref().is_some_and(|i| i.tags == [tag]));
    found.unwrap_or_else(|| panic!("a deletion of {tag}")).id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_restores_approves_and_follows_in_a_real_browser() {
    let rig = Rig::start().await;
    for tag in ["latest", "v1", "v2"] {
        rig.registry.push_image("team/app", &[tag], None, &format!("team:{tag}")).await;
    }
    for tag in ["latest", "v1", "v2", "v3", "v4"] {
        rig.registry.push_image("held/app", &[tag], None, &format!("held:{tag}")).await;
    }
    rig.add_registry().await;
    let team_job = rig.clean("team", "team/app", 1.0).await;
    let pending = rig.deletions(team_job, 2, DeletionStatus::PendingDelete).await;
    // Deleting 4 of 5 tags is over this policy's 50% guard: held.
    let held_job = rig.clean("held", "held/app", 0.5).await;
    let held = rig.deletions(held_job, 4, DeletionStatus::AwaitingApproval).await;
    let c = rig.console.url.as_str();
    let b = Browser::start().await;

    // Not signed in: a page sends you to sign in; an unknown token is told so.
    b.goto(&format!("{c}/deletions?job={team_job}")).await;
    let url = b.current_url().await;
    assert!(url.ends_with(&format!("/sign-in?next=%2Fdeletions%3Fjob%3D{team_job}")), "{url}");
    b.type_into("#token", "rsw_nobody_knows_this").await;
    b.click("form.signin button").await;
    assert!(b.text("#signin-error").await.contains("does not know this token"));
    b.screenshot("sign-in").await;
    // The refused sign-in answered 401, which the page's console reports.
    let _ = b.console_log().await;

    // A read token sees everything, back where it was sent from...
    b.type_into("#token", READ).await;
    b.click("form.signin button").await;
    b.wait_url(|u| u.ends_with(&format!("/deletions?job={team_job}"))).await;
    b.goto(&format!("{c}/")).await;
    let overview = b.text("main").await;
    assert!(overview.contains("worker-1"), "{overview}");
    assert!(overview.contains("pending delete 2"), "{overview}");
    assert!(overview.contains("awaiting approval 4"), "{overview}");
    let chart = b.text("#chart-summary").await;
    assert!(chart.starts_with("Deletions per hour over the last 3 days: 0 deleted"), "{chart}");
    let cleanups = b.text("#cleanups").await;
    assert!(cleanups.starts_with("0 running of a capacity of 4;"), "{cleanups}");
    b.screenshot("overview").await;
    no_console_errors(&b, "overview").await;
    b.goto(&format!("{c}/deletions?job={team_job}")).await;
    for d in &pending {
        assert!(
            b.try_find(&format!("#deletion-{}", d.id)).await.is_some(),
            "deletion {} listed",
            d.id
        );
    }
    // ...but may not restore: the button is disabled and says why.
    assert!(!b.enabled("div.actions button").await);
    assert_eq!(b.text("#restore-why").await, "your token may only read");
    b.screenshot("deletions-read-token").await;
    no_console_errors(&b, "deletions").await;

    // Forged requests change nothing: the read token's own POST is refused
    // by the scrubber; an admin's without this browser's CSRF token, or
    // from another site, by the console.
    let csrf =
        b.cookies().await.into_iter().find(|(n, _)| n == "regsweep_csrf").expect("csrf cookie").1;
    let v1_id = id_of(&pending, "v1").to_string();
    let http = reqwest::Client::new();
    let post = |token: &str, form: Vec<(&str, &str)>, site: &str| {
        http.post(format!("{c}/deletions/restore"))
            .header("cookie", format!("regsweep_token={token}; regsweep_csrf={csrf}"))
            .header("sec-fetch-site", site)
            .form(&form)
            .send()
    };
    let as_reader =
        post(READ, vec![("csrf", &csrf), ("id", &v1_id)], "same-origin").await.expect("post");
    assert_eq!(as_reader.status(), 403, "a read token's restore");
    let no_csrf = post(ADMIN, vec![("id", &v1_id)], "same-origin").await.expect("post");
    assert_eq!(no_csrf.status(), 403, "a restore without the csrf token");
    let cross =
        post(ADMIN, vec![("csrf", &csrf), ("id", &v1_id)], "cross-site").await.expect("post");
    assert_eq!(cross.status(), 403, "a restore from another site");
    rig.deletions(team_job, 2, DeletionStatus::PendingDelete).await;

    // An admin restores one deletion; the CLI sees it restored.
    b.click("form.signout button").await;
    b.wait_url(|u| u.ends_with("/sign-in")).await;
    assert_eq!(sign_in(&b, c, ADMIN).await, format!("{c}/"));
    b.goto(&format!("{c}/deletions?job={team_job}")).await;
    assert!(b.enabled("div.actions button").await);
    b.click(&format!("#sel-{v1_id}")).await;
    b.click("div.actions button").await;
    assert_eq!(b.text("#outcome").await, "Restored 1 of 1.");
    b.screenshot("restored").await;
    no_console_errors(&b, "restore").await;
    let listed = regsweep(
        &rig.scheduler.url,
        &[
            "--scrubber",
            &rig.scrubber.url,
            "--token",
            ADMIN,
            "--output",
            "json",
            "scrub",
            "list",
            "--status",
            "restored",
        ],
    )
    .await;
    let listed = json(&listed);
    let ids: Vec<i64> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_i64().or_else(|| d["id"].as_str()?.parse().ok()))
        .collect();
    assert_eq!(ids, vec![id_of(&pending, "v1")], "{listed}");
    assert!(rig.registry.tag_digest("team/app", "v1").await.is_some());

    // The filter form (its empty boxes sent as such) finds it restored.
    b.goto(&format!("{c}/deletions")).await;
    b.script("document.querySelector('#f-status').value = 'restored';").await;
    b.click("form.filters button").await;
    b.wait_url(|u| u.contains("status=restored")).await;
    assert!(b.try_find(&format!("#deletion-{v1_id}")).await.is_some(), "{}", b.text("main").await);

    // The held plan, approved as a whole.
    b.goto(&format!("{c}/deletions?status=awaiting_approval&job={held_job}")).await;
    for d in &held {
        b.click(&format!("#sel-{}", d.id)).await;
    }
    b.screenshot("deletions-held").await;
    b.click("div.actions button").await;
    assert_eq!(b.text("#outcome").await, "Approved 4 of 4.");
    let client = rig.scrubber.client().await;
    let request = v1::ListDeletionsRequest { job_id: held_job, ..Default::default() };
    let after =
        client.clone().list_deletions(admin(request)).await.expect("list").into_inner().deletions;
    assert!(after.iter().all(|d| d.status() != DeletionStatus::AwaitingApproval), "{after:?}");
    no_console_errors(&b, "approve").await;

    policies_and_the_rest(&rig, &b).await;

    // A running job's log grows on its page without a reload.
    let args = regsweep_proto::json_to_struct(serde_json::json!({"seconds": 5}));
    let create =
        v1::CreateJobRequest { kind: "sleep".into(), args: Some(args), ..Default::default() };
    let job = rig
        .scheduler
        .jobs()
        .await
        .create_job(admin(create))
        .await
        .expect("job")
        .into_inner()
        .job
        .expect("job");
    let jobs = rig.scheduler.jobs().await;
    wait_until("the sleep job to run", Duration::from_secs(20), || {
        let mut jobs = jobs.clone();
        async move {
            let j = jobs
                .get_job(admin(v1::GetJobRequest { id: job.id }))
                .await
                .ok()?
                .into_inner()
                .job?;
            (j.status() == JobStatus::Running).then_some(())
        }
    })
    .await;
    // The overview counts it among the running.
    b.goto(&format!("{c}/")).await;
    let running = b
        .script("return document.querySelector(\"#queue a[href='/jobs?kind=sleep&status=running']\").textContent;")
        .await;
    assert_eq!(running, "1", "{}", b.text("main").await);
    b.goto(&format!("{c}/jobs/{}", job.id)).await;
    let first = b.text("#log").await;
    assert!(first.contains("sleeping for") && !first.contains("slept for"), "{first}");
    b.script("window.regsweepStayed = true; return true;").await;
    let url = format!("{c}/jobs/{}", job.id);
    wait_until("the log to grow", Duration::from_secs(20), || async {
        b.text("#log").await.contains("slept for").then_some(())
    })
    .await;
    wait_until("the status to turn done", Duration::from_secs(10), || async {
        (b.text("#job-status").await == "done").then_some(())
    })
    .await;
    assert_eq!(b.script("return window.regsweepStayed === true;").await, true, "the page reloaded");
    assert!(!b.enabled("form.cancel button").await, "an ended job offers no cancel");
    assert_eq!(b.current_url().await, url);
    b.screenshot("job").await;
    no_console_errors(&b, "job").await;

    // The log as events: each line's id resumes right after it, so a
    // browser reconnecting with its last id is sent nothing twice.
    let events = |last: Option<&str>| {
        let mut get = http
            .get(format!("{c}/jobs/{}/log", job.id))
            .header("cookie", format!("regsweep_token={ADMIN}"));
        if let Some(last) = last {
            get = get.header("last-event-id", last);
        }
        async move { sse_lines(&get.send().await.expect("log").text().await.expect("body")) }
    };
    let all = events(None).await;
    let texts: Vec<&str> = all.iter().map(|(_, data)| data.as_str()).collect();
    assert!(texts.len() == 2 && texts[1].ends_with("slept for 5s"), "{texts:?}");
    assert_eq!(events(Some(&all[0].0)).await, all[1..], "resumed after the first line");
    assert!(events(Some(&all[1].0)).await.is_empty(), "resumed after the last line");
    b.goto(&format!("{c}/jobs")).await;
    assert!(b.try_find(&format!("a[href='/jobs/{}']", job.id)).await.is_some());
    b.screenshot("jobs").await;
    no_console_errors(&b, "jobs").await;
    b.quit().await;
}

/// A log followed while its scheduler goes away (killed, restarted, a
/// rolling upgrade) is not ended as failed: the event stream just ends,
/// so the browser connects again from its last event once a scheduler
/// answers. A `failed` event would stop the page following for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_followed_log_outlives_its_scheduler_going_away() {
    let rig = Rig::start().await;
    let args = regsweep_proto::json_to_struct(serde_json::json!({"seconds": 60}));
    let create =
        v1::CreateJobRequest { kind: "sleep".into(), args: Some(args), ..Default::default() };
    let mut jobs = rig.scheduler.jobs().await;
    let job = jobs.create_job(admin(create)).await.expect("job").into_inner().job.expect("job");
    let mut response = reqwest::Client::new()
        .get(format!("{}/jobs/{}/log", rig.console.url, job.id))
        .header("cookie", format!("regsweep_token={ADMIN}"))
        .send()
        .await
        .expect("follow the log");
    let mut body = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.expect("a chunk") {
            body.push_str(&String::from_utf8_lossy(&chunk));
            if body.contains("sleeping for") {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the first line");
    rig.scheduler.process.signal(nix::sys::signal::Signal::SIGKILL);
    let rest = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), rest).await.expect("the stream to end");
    assert!(!body.contains("event: failed"), "the follow was ended as failed: {body}");
}

/// The policy pages (a preview as the CLI's, the scheduler's validation
/// beside its field, the impact of saving without saving), repositories,
/// workers' capacity and registries; as an admin.
async fn policies_and_the_rest(rig: &Rig, b: &Browser) {
    let c = rig.console.url.as_str();
    b.goto(&format!("{c}/policies/team?repository=team/app")).await;
    let shown = decisions_shown(b).await;
    let cli = regsweep(
        &rig.scheduler.url,
        &[
            "--token",
            ADMIN,
            "--output",
            "json",
            "policies",
            "preview",
            "--policy",
            "team",
            "--repository",
            "team/app",
        ],
    )
    .await;
    let cli = json(&cli);
    let mut expected: Vec<(String, String)> = cli["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| {
            let action = d["action"].as_str().unwrap_or_default();
            let action = action.trim_start_matches("TAG_ACTION_").to_ascii_lowercase();
            (d["tag"].as_str().unwrap_or_default().to_string(), action)
        })
        .collect();
    expected.sort();
    assert_eq!(shown, expected, "the console's preview and the CLI's");
    assert!(shown.contains(&("v2".to_string(), "delete".to_string())), "{shown:?}");
    b.screenshot("policy-preview").await;
    no_console_errors(b, "policy").await;

    // An invalid regex: the scheduler's error beside its field, nothing saved.
    b.goto(&format!("{c}/policies/team/edit")).await;
    let field = "#p-name_regex_delete";
    b.script("document.querySelector('#p-name_regex_delete').value = '';").await;
    b.type_into(field, "v(").await;
    b.click("button[value=save]").await;
    let error = b.text("#err-name_regex_delete").await;
    assert!(error.contains("name_regex_delete"), "{error}");
    b.screenshot("policy-invalid").await;
    let _ = b.console_log().await; // the refused save answered 400
    let get = v1::GetPolicyRequest { name: "team".into() };
    let stored = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("policy");
    assert_eq!(stored.into_inner().policy.expect("policy").name_regex_delete, "v.*");

    // The impact of keeping `v2` too: shown, and still nothing saved.
    b.script("document.querySelector('#p-name_regex_delete').value = 'v.*';").await;
    b.type_into("#p-name_regex_keep", "v2").await;
    b.type_into("#p-preview_repository", "team/app").await;
    b.click("button[value=preview]").await;
    b.find("#decisions").await;
    let impact = decisions_shown(b).await;
    b.screenshot("policy-impact").await;
    assert!(impact.contains(&("v2".to_string(), "keep".to_string())), "{impact:?}");
    let get = v1::GetPolicyRequest { name: "team".into() };
    let stored = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("policy");
    assert_eq!(
        stored.into_inner().policy.expect("policy").name_regex_keep,
        "",
        "a preview saves nothing"
    );

    // Someone else changes the policy while the form is open: saving the
    // form overwrites nothing, and says so.
    let policy = v1::Policy { name: "team".into(), keep_n: 7, ..Default::default() };
    let meanwhile = v1::UpdatePolicyRequest {
        policy: Some(policy),
        update_mask: vec!["keep_n".into()],
        ..Default::default()
    };
    rig.scheduler
        .policies()
        .await
        .update_policy(admin(meanwhile))
        .await
        .expect("changed meanwhile");
    b.click("button[value=save]").await;
    let error = b.text("#form-errors").await;
    assert!(error.contains("changed since this form was opened"), "{error}");
    let _ = b.console_log().await; // the refused save answered 400
    let get = v1::GetPolicyRequest { name: "team".into() };
    let stored = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("policy");
    let stored = stored.into_inner().policy.expect("policy");
    assert_eq!((stored.keep_n, stored.name_regex_keep.as_str()), (7, ""), "nothing overwritten");

    // A new policy from the form: a dry run unless made live.
    b.goto(&format!("{c}/policies/new")).await;
    b.type_into("#p-name", "ci").await;
    b.type_into("#p-repository_selector", "ci/**").await;
    b.type_into("#p-cadence", "1d").await;
    b.type_into("#p-keep_n", "3").await;
    b.type_into("#p-name_regex_delete", "pr-.*").await;
    b.click("button[value=save]").await;
    b.wait_url(|u| u.ends_with("/policies/ci")).await;
    b.screenshot("policy-created").await;
    let get = v1::GetPolicyRequest { name: "ci".into() };
    let created = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("created");
    let created = created.into_inner().policy.expect("policy");
    assert_eq!(
        (
            created.registry.as_str(),
            created.repository_selector.as_str(),
            created.keep_n,
            created.dry_run
        ),
        ("local", "ci/**", 3, true)
    );

    rules_as_rows(rig, b).await;

    b.goto(&format!("{c}/repositories?policy=team")).await;
    let repositories = b.text("main table").await;
    assert!(repositories.contains("local/team/app"), "{repositories}");
    assert!(!repositories.contains("held/app"), "{repositories}");
    b.screenshot("repositories").await;

    // Each registry's last catalog sync: one that cannot be reached shows
    // its sync's error.
    let gone = v1::Registry {
        name: "gone".into(),
        url: "http://127.0.0.1:9".into(),
        ..Default::default()
    };
    let create = v1::CreateRegistryRequest { registry: Some(gone), ..Default::default() };
    let created = rig.scheduler.registries().await.create_registry(admin(create)).await;
    let sync = created.expect("registry").into_inner().sync_job_id;
    let jobs = rig.scheduler.jobs().await;
    let error = wait_until("the sync to fail", Duration::from_secs(20), || {
        let mut jobs = jobs.clone();
        async move {
            let job = jobs.get_job(admin(v1::GetJobRequest { id: sync })).await.ok()?;
            let job = job.into_inner().job?;
            (!job.last_error.is_empty()).then_some(job.last_error)
        }
    })
    .await;
    // A registry that pushed back says so beside its rate limit.
    let pushback = v1::RecordPushbackRequest { registry: "local".into(), rate: 42.5, status: 429 };
    let mut repositories = rig.scheduler.repositories().await;
    repositories.record_pushback(admin(pushback)).await.expect("pushback recorded");
    b.goto(&format!("{c}/registries")).await;
    let table = b.text("main table").await;
    assert!(table.contains(&rig.registry.url()), "{table}");
    assert!(table.contains("pushed back (429) at 42.5/s"), "{table}");
    assert_eq!(
        b.script("return document.querySelectorAll('div.pushback').length;").await,
        serde_json::json!(1),
        "only the registry that pushed back"
    );
    let last_sync = |name: &str| {
        let script = format!(
            "return [...document.querySelectorAll('main table tbody tr')]
                .find(r => r.cells[0].textContent === '{name}')
                .querySelector('td.sync').textContent;"
        );
        async move { b.script(&script).await }
    };
    let gone = last_sync("gone").await;
    assert!(gone.as_str().is_some_and(|t| t.contains(&error)), "{gone}\n{error}");
    let local = last_sync("local").await;
    assert!(local.as_str().is_some_and(|t| t.starts_with("done")), "{local}");
    b.screenshot("registries").await;

    // Capacity, changed from the browser, as the scheduler has it.
    b.goto(&format!("{c}/workers")).await;
    let id = worker_id(rig, "worker-1").await;
    let input = format!("[id='cap-{id}-sleep']");
    b.script(&format!("document.querySelector(\"{input}\").value = '2';")).await;
    b.click(&format!("form[action='/workers/{id}/capacity'] button")).await;
    // The page is at /workers before the form's answer too: wait for the
    // scheduler to have the change, not for the URL.
    let jobs = rig.scheduler.jobs().await;
    wait_until("the capacity to change", Duration::from_secs(10), || {
        let (mut jobs, id) = (jobs.clone(), id.clone());
        async move {
            let listed = jobs.list_workers(admin(v1::ListWorkersRequest::default())).await.ok()?;
            let worker = listed.into_inner().workers.into_iter().find(|w| w.id == id)?;
            (worker.capacity.get("sleep") == Some(&2)).then_some(())
        }
    })
    .await;
    b.wait_url(|u| u.ends_with("/workers")).await;
    b.screenshot("workers").await;
    no_console_errors(b, "the rest").await;
}

/// (tag, action) of the preview table, sorted.
async fn decisions_shown(b: &Browser) -> Vec<(String, String)> {
    let rows = b
        .script(
            "return Array.from(document.querySelectorAll('#decisions tr[data-tag]'))\
             .map(r => [r.dataset.tag, r.dataset.action]);",
        )
        .await;
    let mut shown: Vec<(String, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    shown.sort();
    shown
}

async fn worker_id(rig: &Rig, name: &str) -> String {
    let mut jobs = rig.scheduler.jobs().await;
    let listed =
        jobs.list_workers(admin(v1::ListWorkersRequest::default())).await.expect("workers");
    listed.into_inner().workers.into_iter().find(|w| w.name == name).expect("worker").id
}

/// The `line` events of a server-sent event stream, as (id, data).
fn sse_lines(body: &str) -> Vec<(String, String)> {
    let field = |event: &str, name: &str| {
        event.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_string())
    };
    body.split("\n\n")
        .filter(|event| field(event, "event:").as_deref() == Some("line"))
        .map(|event| {
            (field(event, "id:").unwrap_or_default(), field(event, "data:").unwrap_or_default())
        })
        .collect()
}

/// A policy's rules edited as rows: one added, a row the scheduler refuses
/// shown with its error under it (nothing saved), then removed and saved.
async fn rules_as_rows(rig: &Rig, b: &Browser) {
    let c = rig.console.url.as_str();
    b.goto(&format!("{c}/policies/ci/edit")).await;
    // Rules replace the single-rule fields, which must then be unset.
    b.script("document.querySelector('#p-keep_n').value = '';").await;
    b.script("document.querySelector('#p-name_regex_delete').value = '';").await;
    b.type_into("#rule-0-name", "releases").await;
    b.type_into("#rule-0-pattern", "v*").await;
    b.type_into("#rule-0-keep_newest", "2").await;
    b.script("document.querySelector('#rule-0-per').value = 'VERSION_GROUP_MAJOR';").await;
    b.click("button[value=add_rule]").await;
    b.find("#rule-2-name").await;
    let kept = b.script("return document.querySelector('#rule-0-name').value;").await;
    assert_eq!(kept, "releases", "typed rows survive adding one");
    b.type_into("#rule-1-name", "bad").await;
    b.type_into("#rule-1-semver", ">>1").await;
    b.type_into("#rule-1-keep_newest", "1").await;
    b.click("button[value=save]").await;
    let error = b.text("#err-rules-1").await;
    assert!(error.contains("rules[1].semver"), "{error}");
    let others = b.script("return document.querySelectorAll('.error').length;").await;
    assert_eq!(others, 1, "only the bad row has errors");
    b.screenshot("policy-rules-invalid").await;
    let _ = b.console_log().await; // the refused save answered 400
    let get = v1::GetPolicyRequest { name: "ci".into() };
    let stored = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("policy");
    assert!(stored.into_inner().policy.expect("policy").rules.is_empty(), "nothing saved");

    b.click("#rule-1-remove").await;
    b.click("button[value=save]").await;
    b.wait_url(|u| u.ends_with("/policies/ci")).await;
    let get = v1::GetPolicyRequest { name: "ci".into() };
    let stored = rig.scheduler.policies().await.get_policy(admin(get)).await.expect("policy");
    let rules = stored.into_inner().policy.expect("policy").rules;
    let expected = v1::PolicyRule {
        name: "releases".into(),
        tag_glob: "v*".into(),
        keep_newest: 2,
        per: v1::VersionGroup::Major.into(),
        // The scheduler's default, stored.
        tag_state: v1::TagState::Tagged.into(),
        ..Default::default()
    };
    assert_eq!(rules, [expected]);
}

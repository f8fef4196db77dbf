//! Real images against the real registry, run for real (not dry runs):
//! multi-arch indexes with per-arch tags, Docker manifest lists, cosign
//! signature tags, OCI 1.1 artifacts with their referrers fallback index,
//! and creation times that lie. Every assertion is on the registry's state
//! afterwards. Then the planner's generator (`graphgen`), end to end.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use regsweep_integration_tests::graphgen::{self, Model, convention};
use regsweep_integration_tests::{Scheduler, Scrubber, TestDb, TestRegistry, Worker, wait_until};
use regsweep_policy::{
    Action, AgeFrom, AgeSource, AttachmentPolicy, Rule, RuleSpec, TagCleanupResult, TagKind,
};
use regsweep_proto::v1::{self, DeletionStatus};
use regsweep_proto::{duration_from_std, struct_to_json};

use crate::policies::{
    create_policy, create_registry, days_ago, policy_for, preview, run_policy, sync,
};

/// A registry and the three services, deleting at once (no undo window).
struct Cluster {
    registry: TestRegistry,
    scheduler: Scheduler,
    scrubber: Scrubber,
    _worker: Worker,
    _db: TestDb,
}

impl Cluster {
    async fn start() -> Self {
        let registry = TestRegistry::start().await;
        let db = TestDb::create().await;
        let scheduler = Scheduler::start(&db, &["--tick", "200ms"]).await;
        let scrubber = Scrubber::start("scrubber", &db, &scheduler, &["--delay", "0s"]).await;
        let worker = Worker::start(&scheduler, "w1", &["--scrubber", &scrubber.url]).await;
        create_registry(&scheduler, "local", &registry.url()).await;
        Self { registry, scheduler, scrubber, _worker: worker, _db: db }
    }

    /// Runs a live policy named `name` over `repo` alone, to the end of its
    /// deletions; returns the cleanup's result.
    async fn cleanup(&self, name: &str, repo: &str, spec: &RuleSpec) -> TagCleanupResult {
        sync(&self.scheduler, "local").await;
        let policy = create_policy(&self.scheduler, policy_for(name, repo, spec)).await;
        let catalog = reqwest::get(format!("{}/v2/_catalog?n=1000", self.registry.url())).await;
        let catalog = catalog.expect("catalog").text().await.expect("catalog body");
        assert_eq!(policy.repository_count, 1, "policy {name} covers {repo}; catalog {catalog}");
        assert!(policy.warnings.is_empty(), "a registry that deletes: {policy:?}");
        run_policy(&self.scheduler, name).await;
        let job = self.finished_cleanup(name).await;
        assert_eq!(job.status(), v1::JobStatus::Done, "cleanup of {repo}: {}", job.last_error);
        let result: TagCleanupResult =
            serde_json::from_value(struct_to_json(job.result.as_ref().expect("result")))
                .expect("a tag_cleanup result");
        self.deletions_ended(job.id, result.deletions.len()).await;
        result
    }

    /// Runs policy `name` again; its next cleanup job once it ended.
    async fn rerun(&self, name: &str) -> v1::Job {
        let before = self.finished_cleanup(name).await.id;
        run_policy(&self.scheduler, name).await;
        wait_until("the next cleanup to end", Duration::from_secs(30), || async move {
            let job = self.finished_cleanup(name).await;
            (job.id != before).then_some(job)
        })
        .await
    }

    /// The cleanup job of policy `name`'s one repository, once it ended.
    async fn finished_cleanup(&self, name: &str) -> v1::Job {
        wait_until("the cleanup to end", Duration::from_secs(30), || async move {
            let request = v1::ListRepositoriesRequest { policy: name.into(), ..Default::default() };
            let mut repositories = self.scheduler.repositories().await;
            let repos = repositories.list_repositories(request).await.ok()?.into_inner();
            let job_id = repos.repositories.first().map(|r| r.last_job_id).filter(|id| *id > 0)?;
            let request = v1::GetJobRequest { id: job_id };
            let job = self.scheduler.jobs().await.get_job(request).await.ok()?.into_inner().job?;
            // A failed attempt (a blocked plan retries) ends the wait too.
            (job.status().is_terminal() || !job.last_error.is_empty()).then_some(job)
        })
        .await
    }

    async fn deletions_ended(&self, job_id: i64, n: usize) {
        if n == 0 {
            return;
        }
        let scrubber = self.scrubber.client().await;
        let ended = wait_until("the deletions to end", Duration::from_secs(60), || {
            let mut scrubber = scrubber.clone();
            async move {
                let request = v1::ListDeletionsRequest { job_id, ..Default::default() };
                let listed = scrubber.list_deletions(request).await.ok()?.into_inner().deletions;
                let done = listed.len() >= n
                    && listed.iter().all(|d| {
                        matches!(d.status(), DeletionStatus::Deleted | DeletionStatus::Failed)
                    });
                done.then_some(listed)
            }
        })
        .await;
        assert!(ended.iter().all(|d| d.status() == DeletionStatus::Deleted), "{ended:?}");
    }
}

fn spec(keep_n: i64, older_than_days: i64, delete: &str, keep: &str) -> RuleSpec {
    RuleSpec {
        keep_n,
        older_than_seconds: older_than_days * 86_400,
        name_regex_delete: delete.into(),
        name_regex_keep: keep.into(),
        ..Default::default()
    }
}

fn rule_of(result: &TagCleanupResult, tag: &str) -> (Action, Rule) {
    let d = result.tags.iter().find(|d| d.tag == tag).unwrap_or_else(|| panic!("{tag} decided"));
    (d.action, d.rule)
}

#[tokio::test(flavor = "multi_thread")]
async fn per_arch_tags_never_take_a_kept_index_apart() {
    let c = Cluster::start().await;
    let r = &c.registry;
    let repo = "graph/multiarch";
    let amd = r.push_image(repo, &["v1-amd64"], Some(days_ago(30)), "amd").await;
    let arm = r.push_image(repo, &["v1-arm64"], Some(days_ago(30)), "arm").await;
    r.push_index(repo, "v1", &[(&amd, "amd64"), (&arm, "arm64")]).await;
    let d_amd = r.push_docker_image(repo, &["v2-amd64"], Some(days_ago(30)), "d-amd").await;
    let d_arm = r.push_docker_image(repo, &["v2-arm64"], Some(days_ago(30)), "d-arm").await;
    r.push_list(repo, "v2", &[(&d_amd, "amd64"), (&d_arm, "arm64")]).await;
    let before = r.manifests(repo);

    // The per-arch tags match the delete regex; their indexes do not.
    let result = c.cleanup("multiarch", repo, &spec(0, 0, ".*-(amd64|arm64)", "")).await;
    assert_eq!(rule_of(&result, "v1-amd64"), (Action::Keep, Rule::KeptWithIndex));
    assert_eq!(rule_of(&result, "v2-arm64"), (Action::Keep, Rule::KeptWithIndex));
    for tag in ["v1", "v2", "v1-amd64", "v1-arm64", "v2-amd64", "v2-arm64"] {
        r.pull(repo, tag).await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(r.manifests(repo), before, "nothing was deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_image_takes_its_platforms_and_attachments_a_kept_one_keeps_them() {
    let c = Cluster::start().await;
    let r = &c.registry;
    let repo = "graph/signed";
    // v1: an old multi-arch index, per-arch tags, a cosign signature.
    let amd = r.push_image(repo, &["v1-amd64"], Some(days_ago(30)), "amd").await;
    let arm = r.push_image(repo, &["v1-arm64"], Some(days_ago(30)), "arm").await;
    let v1 = r.push_index(repo, "v1", &[(&amd, "amd64"), (&arm, "arm64")]).await;
    let sig1 = r.push_cosign_signature(repo, &v1).await;
    // v2: the newest, signed, with an SBOM and a signature as OCI 1.1
    // artifacts listed by its referrers fallback index.
    let v2 = r.push_image(repo, &["v2"], Some(days_ago(1)), "v2").await;
    let sig2 = r.push_cosign_signature(repo, &v2).await;
    let sbom2 = r.push_artifact(repo, &v2, "application/spdx+json").await;
    let att2 = r.push_artifact(repo, &v2, "application/vnd.dev.sigstore.bundle.v0.3+json").await;
    let refs2 = r
        .push_referrers_index(
            repo,
            &v2,
            &[
                (&sbom2, "application/spdx+json"),
                (&att2, "application/vnd.dev.sigstore.bundle.v0.3+json"),
            ],
        )
        .await;
    // v3: old, with an SBOM through its fallback index.
    let v3 = r.push_image(repo, &["v3"], Some(days_ago(40)), "v3").await;
    let sbom3 = r.push_artifact(repo, &v3, "application/spdx+json").await;
    let refs3 = r.push_referrers_index(repo, &v3, &[(&sbom3, "application/spdx+json")]).await;
    assert_eq!(r.manifests(repo).len(), 12);

    // Everything is a candidate; only the newest image stays.
    let result = c.cleanup("signed", repo, &spec(1, 7, ".*", "")).await;
    assert_eq!(rule_of(&result, "v2"), (Action::Keep, Rule::KeepN));
    let kept_n = result.tags.iter().filter(|d| d.rule == Rule::KeepN).count();
    assert_eq!(kept_n, 1, "signatures and fallback tags take no keep_n slot");
    assert!(result.tags.iter().filter(|d| d.kind == TagKind::Attachment).count() == 4);

    // v2 still pulls, with every attachment.
    r.pull(repo, "v2").await.unwrap_or_else(|e| panic!("{e}"));
    let kept: BTreeSet<String> = [&v2, &sig2, &sbom2, &att2, &refs2].map(|d| d.to_string()).into();
    assert_eq!(r.manifests(repo), kept, "v1, v3, their platforms and attachments are gone");
    assert_eq!(r.tag_digest(repo, &format!("{}.sig", convention(&v2))).await, Some(sig2));
    assert_eq!(r.tag_digest(repo, &convention(&v2)).await, Some(refs2));
    for gone in ["v1", "v1-amd64", "v1-arm64", "v3"] {
        assert!(r.tag_digest(repo, gone).await.is_none(), "{gone} survived");
    }
    let _ = (sig1, refs3);
}

#[tokio::test(flavor = "multi_thread")]
async fn creation_times_that_lie_never_cost_the_newest_push() {
    let c = Cluster::start().await;
    let r = &c.registry;
    let repo = "graph/reproducible";
    let known = r.push_image(repo, &["known"], Some(days_ago(60)), "known").await;
    // Reproducible builds: every image claims 1970, pushed after `known`.
    let epoch = Some(DateTime::<Utc>::UNIX_EPOCH);
    for name in ["alpha", "beta", "gamma", "xray", "zeta"] {
        r.push_image(repo, &[name], epoch, name).await;
    }
    r.push_image(repo, &["missing"], None, "missing").await;
    let before = r.manifests(repo);
    let unknown = ["alpha", "beta", "gamma", "xray", "zeta", "missing"];

    // By `created` alone: the known image ranks first, and no image of
    // unknown age is old enough to go (never "oldest").
    let by_created = v1::Policy {
        name: "by-created".into(),
        registry: "local".into(),
        repository_selector: "graph/none".into(),
        cadence: "7d".into(),
        keep_n: 3,
        older_than: Some(duration_from_std(Duration::from_secs(30 * 86_400))),
        age_source: v1::AgeSource::Created.into(),
        dry_run: true,
        ..Default::default()
    };
    create_policy(&c.scheduler, by_created).await;
    let preview = preview(&c.scheduler, "by-created", repo).await;
    let decision = |tag: &str| preview.decisions.iter().find(|d| d.tag == tag).expect("decided");
    assert_eq!(decision("known").rule, "keep_n");
    for name in unknown {
        let d = decision(name);
        assert!(d.action() == v1::TagAction::Keep && d.age.is_none(), "{name}: {d:?}");
        assert!(["keep_n", "age_unknown"].contains(&d.rule.as_str()), "{name}: {d:?}");
    }

    // `auto` (the default): the others are as old as regsweep's first
    // sighting of them, now, so none is old enough to go; the image built
    // 60 days ago ranks after them and is.
    let result = c.cleanup("reproducible", repo, &spec(3, 30, "", "")).await;
    assert_eq!(rule_of(&result, "known"), (Action::Delete, Rule::Delete));
    for name in unknown {
        let (action, rule) = rule_of(&result, name);
        assert_eq!(action, Action::Keep, "{name}");
        assert!(matches!(rule, Rule::KeepN | Rule::NewerThan), "{name}: {rule:?}");
        let d = result.tags.iter().find(|d| d.tag == name).expect("decided");
        assert_eq!(d.age_from, AgeFrom::FirstSeen, "{name} has no believable `created`");
        assert!(d.age.is_some_and(|a| a > days_ago(1)), "{name} was first seen now: {d:?}");
    }
    let mut expected = before;
    expected.remove(&known);
    assert_eq!(r.manifests(repo), expected, "only the image built 60 days ago went");
}

/// Reproducible builds all claim 1970: the scheduler's record of when each
/// tag was first seen on its digest survives across runs and ages them,
/// so the image seen long ago goes and the one pushed since stays. With
/// `created` as the only source, neither has an age and both stay.
#[tokio::test(flavor = "multi_thread")]
async fn first_sightings_age_reproducible_images_across_runs() {
    let c = Cluster::start().await;
    let r = &c.registry;
    let repo = "graph/seen";
    let epoch = Some(DateTime::<Utc>::UNIX_EPOCH);
    let old = r.push_image(repo, &["old"], epoch, "old").await;
    let rules = RuleSpec { age_source: AgeSource::FirstSeen, ..spec(0, 0, "", "") };
    let rules = RuleSpec { older_than_seconds: 6, ..rules };
    let first = c.cleanup("seen", repo, &rules).await;
    assert_eq!(rule_of(&first, "old"), (Action::Keep, Rule::NewerThan), "first seen just now");
    let seen = first.tags[0].age.expect("an age from the first sighting");
    assert_eq!(first.tags[0].age_from, AgeFrom::FirstSeen);

    // The age rule needs wall time to pass: nothing else can be awaited.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let new = r.push_image(repo, &["new"], epoch, "new").await;
    let strict = v1::Policy {
        name: "seen-created".into(),
        registry: "local".into(),
        repository_selector: "graph/none".into(),
        cadence: "7d".into(),
        older_than: Some(duration_from_std(Duration::from_secs(6))),
        age_source: v1::AgeSource::Created.into(),
        dry_run: true,
        ..Default::default()
    };
    create_policy(&c.scheduler, strict).await;
    let by_created = preview(&c.scheduler, "seen-created", repo).await;
    assert!(
        by_created.decisions.iter().all(|d| d.rule == "age_unknown" && d.age_from == "unknown"),
        "by `created` alone no age is known: {by_created:?}"
    );

    let job = c.rerun("seen").await;
    assert_eq!(job.status(), v1::JobStatus::Done, "{}", job.last_error);
    let second: TagCleanupResult =
        serde_json::from_value(struct_to_json(job.result.as_ref().expect("result")))
            .expect("result");
    c.deletions_ended(job.id, second.deletions.len()).await;
    assert_eq!(rule_of(&second, "old"), (Action::Delete, Rule::Delete));
    assert_eq!(second.tags.iter().find(|d| d.tag == "old").and_then(|d| d.age), Some(seen));
    assert_eq!(rule_of(&second, "new"), (Action::Keep, Rule::NewerThan));
    assert_eq!(r.tag_digest(repo, "old").await, None, "the image first seen long ago went");
    assert_eq!(r.tag_digest(repo, "new").await, Some(new.clone()));
    assert_eq!(r.manifests(repo), BTreeSet::from([new]), "{old} deleted");
}

/// Scenarios of the end-to-end safety run: `SCENARIOS` (default 12;
/// `make safety SCENARIOS=N` runs more).
fn scenarios() -> u32 {
    std::env::var("SCENARIOS").ok().and_then(|s| s.parse().ok()).unwrap_or(12)
}

/// The planner's generator, pushed to the real registry and cleaned for
/// real. After each run, on the registry: every kept tag pulls and names
/// what it named; nothing reachable from a kept tag is gone; every deleted
/// tag is gone; a deleted image's attachments are gone; and no manifest
/// is left untagged and unreachable that was not so before.
#[tokio::test(flavor = "multi_thread")]
async fn generated_repositories_keep_what_their_policy_keeps() {
    let c = Cluster::start().await;
    let mut runner = TestRunner::new(Config::default());
    let strategy = (graphgen::arb_layout(14, 16), graphgen::arb_any_spec());
    for n in 0..scenarios() {
        let (layout, spec) =
            strategy.new_tree(&mut runner).expect("a generated scenario").current();
        let repo = format!("gen/s{n}");
        let model = graphgen::push(&layout, &c.registry, &repo).await;
        let tagged_before = model.reach(tag_digests(&model));
        let unreachable_before: BTreeSet<String> =
            c.registry.manifests(&repo).difference(&tagged_before).cloned().collect();
        let result = c.cleanup(&format!("gen-{n}"), &repo, &spec).await;
        let deleted = result.tags.iter().filter(|d| d.action == Action::Delete).count();
        eprintln!(
            "scenario {n}: {} tags, {deleted} deleted, {} manifests deleted by digest",
            result.tags.len(),
            result.planned_digests
        );
        check(&c.registry, &repo, &model, &result, spec.attachments, &unreachable_before)
            .await
            .unwrap_or_else(|e| panic!("scenario {n} ({layout:?}, {spec:?}): {e}"));
    }
}

fn tag_digests(model: &Model) -> impl Iterator<Item = String> + '_ {
    model.inventory.tags.iter().filter_map(|t| t.digest.clone())
}

async fn check(
    registry: &TestRegistry,
    repo: &str,
    model: &Model,
    result: &TagCleanupResult,
    attachments: AttachmentPolicy,
    unreachable_before: &BTreeSet<String>,
) -> Result<(), String> {
    let kept = result.tags.iter().filter(|d| d.action == Action::Keep);
    let kept_digests: Vec<String> = kept.clone().filter_map(|d| d.digest.clone()).collect();
    for d in kept {
        registry.pull(repo, &d.tag).await?;
        if registry.tag_digest(repo, &d.tag).await != d.digest {
            return Err(format!("kept tag {} moved", d.tag));
        }
    }
    let present = registry.manifests(repo);
    for digest in model.reach(kept_digests) {
        if !present.contains(&digest) {
            return Err(format!("{digest} is reachable from a kept tag but gone"));
        }
    }
    for d in result.tags.iter().filter(|d| d.action == Action::Delete) {
        if registry.tag_digest(repo, &d.tag).await.is_some() {
            return Err(format!("deleted tag {} is still there", d.tag));
        }
    }
    let with_subject = attachments == AttachmentPolicy::DeleteWithSubject;
    for (attachment, subject) in &model.attachment_of {
        if with_subject && !present.contains(subject) && present.contains(attachment) {
            let reached = model.reach(tag_digests_now(registry, repo, model).await);
            if !reached.contains(attachment) {
                return Err(format!("{attachment} outlived its deleted subject {subject}"));
            }
        }
    }
    let reachable_now = model.reach(tag_digests_now(registry, repo, model).await);
    let stray: Vec<&String> = present
        .iter()
        .filter(|d| !reachable_now.contains(*d) && !unreachable_before.contains(*d))
        .collect();
    if !stray.is_empty() {
        return Err(format!("left untagged and unreachable: {stray:?}"));
    }
    Ok(())
}

/// The digests the model's tags name now, on the registry.
async fn tag_digests_now(registry: &TestRegistry, repo: &str, model: &Model) -> Vec<String> {
    let mut now = Vec::new();
    for t in &model.inventory.tags {
        if let Some(digest) = registry.tag_digest(repo, &t.tag).await {
            now.push(digest);
        }
    }
    now
}

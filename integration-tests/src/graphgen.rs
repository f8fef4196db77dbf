//! Random repositories shaped like the images people publish, and random
//! policies: one generator for the planner's model-based property test and
//! for the end-to-end safety run against the real registry.
//!
//! A layout is a list of nodes, each built over earlier ones (so the graph
//! is acyclic, as content addressing makes it): plain images, indexes over
//! earlier nodes (multi-arch images, nested indexes, shared children),
//! artifacts attached by OCI `subject`, cosign signature tags, and
//! referrers fallback indexes listing artifacts. Tags name nodes; creation
//! times include the epoch and none at all.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use regsweep_policy::{
    Inventory, ManifestLinks, RuleSpec, TagInput, TagRuleSpec, VersionGroup, attachment_subject,
};

use crate::TestRegistry;

/// The time generated ages count back from.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().unwrap_or_else(Utc::now)
}

/// How a node is made; indexes into earlier nodes wrap around.
#[derive(Clone, Debug)]
pub enum Node {
    Image,
    Index(Vec<usize>),
    /// An artifact whose `subject` is an earlier node.
    Subject(usize),
    /// A cosign signature tag of an earlier node.
    Cosign(usize),
    /// A referrers fallback index of an earlier node listing `n` artifacts.
    Fallback(usize, usize),
}

/// A generated repository: nodes (with a creation time each) and tags
/// (name -> node), each name once.
#[derive(Clone, Debug)]
pub struct Layout {
    pub nodes: Vec<(Node, Option<DateTime<Utc>>)>,
    pub tags: BTreeMap<String, usize>,
}

fn arb_node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => Just(Node::Image),
        2 => prop::collection::vec(0_usize..64, 1..4).prop_map(Node::Index),
        1 => (0_usize..64).prop_map(Node::Subject),
        1 => (0_usize..64).prop_map(Node::Cosign),
        1 => (0_usize..64, 1_usize..3).prop_map(|(s, n)| Node::Fallback(s, n)),
    ]
}

/// Few names, so that shared digests and `latest` are common.
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("latest".to_string()),
        6 => "[a-c][0-9]{0,1}",
        2 => "keep-[0-9]",
        3 => "v?[1-2]\\.[0-2]\\.[0-2](-rc\\.[0-9])?",
    ]
}

/// Hours before `now`, the epoch (reproducible builds), or none.
fn arb_created() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    prop_oneof![
        6 => (-5_i64..60 * 24).prop_map(|h| Some(now() - Duration::hours(h))),
        1 => Just(Some(DateTime::<Utc>::UNIX_EPOCH)),
        1 => Just(None),
    ]
}

pub fn arb_layout(max_nodes: usize, max_tags: usize) -> impl Strategy<Value = Layout> {
    let nodes = prop::collection::vec((arb_node(), arb_created()), 1..max_nodes);
    let tags = prop::collection::vec((arb_name(), 0_usize..64), 0..max_tags);
    (nodes, tags).prop_map(|(mut nodes, names)| {
        // The first node is an image: everything else is built over earlier
        // nodes, and a repository of indexes alone holds no blob, which
        // Distribution leaves out of its catalog.
        nodes[0].0 = Node::Image;
        // Names go to nodes a plain tag can name (not the signature and
        // fallback nodes, whose tags are their convention's).
        let plain: Vec<usize> = (0..nodes.len())
            .filter(|&i| matches!(nodes[i].0, Node::Image | Node::Index(_) | Node::Subject(_)))
            .collect();
        let tags = names
            .into_iter()
            .filter(|_| !plain.is_empty())
            .map(|(name, i)| (name, plain[i % plain.len()]))
            .collect();
        Layout { nodes, tags }
    })
}

/// Policies over the generated names.
pub fn arb_spec() -> impl Strategy<Value = RuleSpec> {
    let delete = prop::sample::select(vec!["", ".*", "[ab].*", "a.*|latest", "keep-.*|c1"]);
    let keep = prop::sample::select(vec!["", "keep-.*", "b1.*"]);
    let attachments = prop::sample::select(vec![
        regsweep_policy::AttachmentPolicy::DeleteWithSubject,
        regsweep_policy::AttachmentPolicy::Keep,
    ]);
    (0_i64..4, prop::sample::select(vec![0_i64, 1, 24, 24 * 30]), delete, keep, attachments)
        .prop_map(|(keep_n, hours, delete, keep, attachments)| RuleSpec {
            keep_n,
            older_than_seconds: hours * 3600,
            name_regex_delete: delete.to_string(),
            name_regex_keep: keep.to_string(),
            attachments,
            ..Default::default()
        })
}

/// One listed rule over the generated names.
pub fn arb_rule() -> impl Strategy<Value = TagRuleSpec> {
    let named = prop::sample::select(vec![
        ("", ""),
        ("[ab].*", ""),
        ("keep-.*", ""),
        ("", "a*"),
        ("v.*", ""),
    ]);
    let exclude = prop::sample::select(vec!["", "", "b1.*", "v2.*"]);
    let semver = prop::sample::select(vec!["", "", ">=1.1.0", "<2"]);
    let per =
        prop::sample::select(vec![VersionGroup::None, VersionGroup::Major, VersionGroup::Minor]);
    let keep = prop_oneof![
        1 => Just((true, 0_i64, 0_i64)),
        4 => (0_i64..3, prop::sample::select(vec![0_i64, 1, 24, 24 * 30]))
            .prop_map(|(n, hours)| (false, n, hours * 3600)),
    ];
    (named, exclude, semver, per, keep, any::<bool>()).prop_map(
        |((regex, glob), exclude, semver, per, (keep_all, keep_newest, within), prereleases)| {
            let per = if keep_all || keep_newest == 0 { VersionGroup::None } else { per };
            TagRuleSpec {
                tag_regex: regex.into(),
                tag_glob: glob.into(),
                exclude_regex: exclude.into(),
                semver: semver.into(),
                keep_all,
                keep_newest,
                keep_within_seconds: within,
                per,
                count_prereleases: prereleases && per != VersionGroup::None,
                ..TagRuleSpec::default()
            }
        },
    )
}

/// Policies of one to five listed rules, named by position.
pub fn arb_listed_spec() -> impl Strategy<Value = RuleSpec> {
    let attachments = prop::sample::select(vec![
        regsweep_policy::AttachmentPolicy::DeleteWithSubject,
        regsweep_policy::AttachmentPolicy::Keep,
    ]);
    (prop::collection::vec(arb_rule(), 1..5), attachments).prop_map(|(rules, attachments)| {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| TagRuleSpec { name: format!("r{i}"), ..r })
            .collect();
        RuleSpec { rules, attachments, ..RuleSpec::default() }
    })
}

/// Either kind of policy.
pub fn arb_any_spec() -> impl Strategy<Value = RuleSpec> {
    prop_oneof![arb_spec(), arb_listed_spec()]
}

/// A layout with digests: what the planner is given, and every reference
/// for the model to check the plan against.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub inventory: Inventory,
    /// (from, to): an index lists `to`, or `from` is attached to `to`.
    pub references: BTreeSet<(String, String)>,
    /// attachment -> subject.
    pub attachment_of: BTreeMap<String, String>,
    /// Each node's digest.
    pub digests: Vec<String>,
    /// subject -> its artifacts and their types so far: a client adding
    /// a referrer rewrites the fallback index with every one of them.
    referrers: BTreeMap<String, Vec<(String, String)>>,
}

/// The tag name of `subject`'s convention (`sha256-<hex>`).
pub fn convention(subject: &str) -> String {
    subject.replace(':', "-")
}

impl Model {
    /// The model of `layout` with synthetic digests.
    pub fn synthetic(layout: &Layout) -> Self {
        let mut next = 0_usize;
        let mut fresh = move || {
            next += 1;
            format!("sha256:{next:064x}")
        };
        let mut model = Self::default();
        for (i, (node, created)) in layout.nodes.iter().enumerate() {
            let earlier = |j: usize, model: &Self| (i > 0).then(|| model.digests[j % i].clone());
            let digest = fresh();
            let mut links = ManifestLinks::default();
            match node {
                Node::Image => {}
                Node::Index(children) => {
                    links.children = children.iter().filter_map(|&c| earlier(c, &model)).collect();
                    links.children.sort();
                    links.children.dedup();
                }
                Node::Subject(s) => {
                    links.subject = earlier(*s, &model);
                    // As an OCI client must where the registry has no
                    // referrers API: the subject's fallback index is
                    // rewritten to list every referrer.
                    if let Some(subject) = &links.subject {
                        let listed = model.referrers.entry(subject.clone()).or_default();
                        listed.push((digest.clone(), String::new()));
                        let index = fresh();
                        let children =
                            model.referrers[subject].iter().map(|(d, _)| d.clone()).collect();
                        model.add(&index, ManifestLinks { children, ..ManifestLinks::default() });
                        model.tag(&convention(subject), &index, None);
                    }
                }
                Node::Cosign(s) => {
                    if let Some(subject) = earlier(*s, &model) {
                        model.tag(&format!("{}.sig", convention(&subject)), &digest, *created);
                    }
                }
                Node::Fallback(s, n) => {
                    if let Some(subject) = earlier(*s, &model) {
                        for _ in 0..*n {
                            let artifact = fresh();
                            let artifact_links = ManifestLinks {
                                subject: Some(subject.clone()),
                                ..ManifestLinks::default()
                            };
                            model.attach(&artifact, &subject);
                            model.inventory.manifests.insert(artifact.clone(), artifact_links);
                            let listed = model.referrers.entry(subject.clone()).or_default();
                            listed.push((artifact, String::new()));
                        }
                        links.children =
                            model.referrers[&subject].iter().map(|(d, _)| d.clone()).collect();
                        model.tag(&convention(&subject), &digest, None);
                    }
                }
            }
            model.add(&digest, links);
            model.digests.push(digest);
        }
        for (name, &node) in &layout.tags {
            let digest = model.digests[node].clone();
            model.tag(name, &digest, layout.nodes[node].1);
        }
        model.attach_by_name();
        model
    }

    /// Tags named by convention attach what they point at to their
    /// subject; a convention tag pushed again moved, and so did that link.
    fn attach_by_name(&mut self) {
        let named: Vec<(String, String)> = self
            .inventory
            .tags
            .iter()
            .filter_map(|t| Some((t.digest.clone()?, attachment_subject(&t.tag)?)))
            .collect();
        for (digest, subject) in named {
            self.attach(&digest, &subject);
        }
    }

    fn attach(&mut self, attachment: &str, subject: &str) {
        self.references.insert((attachment.to_string(), subject.to_string()));
        self.attachment_of.insert(attachment.to_string(), subject.to_string());
    }

    fn add(&mut self, digest: &str, links: ManifestLinks) {
        for child in &links.children {
            self.references.insert((digest.to_string(), child.clone()));
        }
        if let Some(subject) = &links.subject {
            self.attach(digest, subject);
        }
        self.inventory.manifests.insert(digest.to_string(), links);
    }

    fn tag(&mut self, name: &str, digest: &str, created: Option<DateTime<Utc>>) {
        // A convention tag pushed twice points at the last push.
        self.inventory.tags.retain(|t| t.tag != name);
        self.inventory.tags.push(TagInput {
            tag: name.to_string(),
            digest: Some(digest.to_string()),
            created,
            first_seen: None,
        });
    }

    /// Everything reachable from `starts`: down from an index to what it
    /// lists, and from a subject to what is attached to it.
    pub fn reach(&self, starts: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut down: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in &self.references {
            if self.attachment_of.get(from) == Some(to) {
                down.entry(to).or_default().push(from);
            } else {
                down.entry(from).or_default().push(to);
            }
        }
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = starts.into_iter().collect();
        while let Some(d) = stack.pop() {
            if seen.insert(d.clone()) {
                stack.extend(down.get(d.as_str()).into_iter().flatten().map(|s| s.to_string()));
            }
        }
        seen
    }
}

/// Pushes `layout` into `repo` of the real registry, building each node
/// over the ones before it; returns the model with the real digests.
pub async fn push(layout: &Layout, registry: &TestRegistry, repo: &str) -> Model {
    let mut model = Model::default();
    for (i, (node, created)) in layout.nodes.iter().enumerate() {
        let earlier = |j: usize, model: &Model| (i > 0).then(|| model.digests[j % i].clone());
        let unique = format!("{repo}-{i}");
        let (digest, links) = match node {
            Node::Image => {
                (registry.push_image(repo, &[], *created, &unique).await, ManifestLinks::default())
            }
            Node::Index(children) => {
                let mut children: Vec<String> =
                    children.iter().filter_map(|&c| earlier(c, &model)).collect();
                children.sort();
                children.dedup();
                let platforms: Vec<(&str, &str)> =
                    children.iter().map(|c| (c.as_str(), "amd64")).collect();
                let digest = registry.push_index_untagged(repo, &platforms, &unique).await;
                (digest, ManifestLinks { children, ..ManifestLinks::default() })
            }
            Node::Subject(s) => match earlier(*s, &model) {
                Some(subject) => {
                    let kind = unique_type(&unique);
                    let digest = registry.push_artifact(repo, &subject, &kind).await;
                    // The fallback index listing every referrer, as an OCI
                    // client must keep it where there is no referrers API.
                    model
                        .referrers
                        .entry(subject.clone())
                        .or_default()
                        .push((digest.clone(), kind));
                    let artifacts = model.referrers[&subject].clone();
                    let listed: Vec<(&str, &str)> =
                        artifacts.iter().map(|(d, k)| (d.as_str(), k.as_str())).collect();
                    let index = registry.push_referrers_index(repo, &subject, &listed).await;
                    let children = artifacts.into_iter().map(|(d, _)| d).collect();
                    model.add(&index, ManifestLinks { children, ..ManifestLinks::default() });
                    model.tag(&convention(&subject), &index, None);
                    (digest, ManifestLinks { subject: Some(subject), ..ManifestLinks::default() })
                }
                None => (
                    registry.push_image(repo, &[], *created, &unique).await,
                    ManifestLinks::default(),
                ),
            },
            Node::Cosign(s) => match earlier(*s, &model) {
                Some(subject) => {
                    let digest = registry.push_cosign_signature(repo, &subject).await;
                    model.tag(&format!("{}.sig", convention(&subject)), &digest, None);
                    (digest, ManifestLinks::default())
                }
                None => (
                    registry.push_image(repo, &[], *created, &unique).await,
                    ManifestLinks::default(),
                ),
            },
            Node::Fallback(s, n) => match earlier(*s, &model) {
                Some(subject) => {
                    for k in 0..*n {
                        let kind = unique_type(&format!("{unique}-{k}"));
                        let artifact = registry.push_artifact(repo, &subject, &kind).await;
                        let links = ManifestLinks {
                            subject: Some(subject.clone()),
                            ..ManifestLinks::default()
                        };
                        model.add(&artifact, links);
                        model.referrers.entry(subject.clone()).or_default().push((artifact, kind));
                    }
                    let artifacts = model.referrers[&subject].clone();
                    let listed: Vec<(&str, &str)> =
                        artifacts.iter().map(|(d, k)| (d.as_str(), k.as_str())).collect();
                    let digest = registry.push_referrers_index(repo, &subject, &listed).await;
                    model.tag(&convention(&subject), &digest, None);
                    let children = artifacts.into_iter().map(|(d, _)| d).collect();
                    (digest, ManifestLinks { children, ..ManifestLinks::default() })
                }
                None => (
                    registry.push_image(repo, &[], *created, &unique).await,
                    ManifestLinks::default(),
                ),
            },
        };
        model.add(&digest, links);
        model.digests.push(digest);
    }
    for (name, &node) in &layout.tags {
        let digest = model.digests[node].clone();
        registry.tag(repo, name, &digest).await;
        model.tag(name, &digest, layout.nodes[node].1);
    }
    model.attach_by_name();
    model
}

fn unique_type(unique: &str) -> String {
    let safe: String =
        unique.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("application/vnd.test.{safe}+json")
}

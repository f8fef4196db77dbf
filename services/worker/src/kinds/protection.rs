//! What `tag_cleanup` may not plan: the registry's protection list and
//! the digests marked in use, asked of the scheduler right before
//! planning. The scrubber asks again right before each DELETE.

use regsweep_policy::Protection;
use regsweep_proto::v1;

use crate::job::JobContext;

/// The protection of `repository`. A scheduler too old to know of
/// protection has none to give; any other failure fails the run rather
/// than plan without it.
pub async fn fetch(
    ctx: &JobContext,
    registry: &str,
    repository: &str,
) -> Result<Protection, String> {
    let request = v1::GetProtectionRequest {
        registry: registry.to_string(),
        repository: repository.to_string(),
    };
    match ctx.services().registries().get_protection(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            let (marks, glob) = (answer.in_use.len(), answer.repository_glob.clone());
            let protection = regsweep_policy::protection_from_proto(repository, answer)?;
            if !glob.is_empty() {
                ctx.log(format!("repository protected by {glob:?}: nothing will be deleted"));
            } else if marks > 0 {
                ctx.log(format!("{marks} digests marked in use"));
            }
            Ok(protection)
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            ctx.log("the scheduler knows no protection lists or in-use marks");
            Ok(Protection::none())
        }
        Err(status) => Err(format!("reading protection: {}", status.message())),
    }
}

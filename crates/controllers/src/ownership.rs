//! Owner references as Kubernetes controllers use them: the controller
//! reference a controller puts on what it creates, and the claim rule
//! (`ControllerRefManager.ClaimObject`) by which a controller adopts
//! matching orphans and releases what stops matching.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use switchboard_api::labels::{Labels, Selector};

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(owners: &[OwnerReference]) -> Option<&OwnerReference> {
    owners.iter().find(|o| o.controller == Some(true))
}

/// The reference a controller of kind `kind` (apiVersion `api_version`)
/// puts on the objects it creates or adopts: `controller: true` and
/// `blockOwnerDeletion: true`, as Kubernetes' `NewControllerRef`.
pub fn controller_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: it counts.
    Owned,
    /// An orphan that matches: take it (then it counts).
    Adopt,
    /// Ours but no longer matching: drop our reference.
    Release,
    /// Someone else's, or an orphan we may not take.
    Ignore,
}

/// The claimant: a controller object.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    /// Its uid.
    pub uid: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// It has a `deletionTimestamp`: it neither adopts nor releases.
    pub deleting: bool,
    /// Its selector.
    pub selector: &'a Selector,
}

/// Kubernetes' claim rule for one candidate: an object controlled by
/// another owner is ignored; ours stays ours while the selector matches and
/// is released when it does not (unless we are being deleted); an orphan in
/// our namespace is adopted when it matches and neither side is being
/// deleted.
pub fn claim<L: Labels + ?Sized>(
    claimant: &Claimant<'_>,
    namespace: &str,
    labels: &L,
    owners: &[OwnerReference],
    deleting: bool,
) -> Claim {
    let matches = claimant.selector.matches(labels);
    match controller_of(owners) {
        Some(c) if c.uid != claimant.uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if claimant.deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if claimant.deleting || !matches || deleting || namespace != claimant.namespace => {
            Claim::Ignore
        }
        None => Claim::Adopt,
    }
}

/// The owner references after adopting: the existing ones plus ours.
pub fn with_owner(owners: &[OwnerReference], ours: OwnerReference) -> Vec<OwnerReference> {
    let mut out: Vec<OwnerReference> = owners
        .iter()
        .filter(|o| o.uid != ours.uid)
        .cloned()
        .collect();
    out.push(ours);
    out
}

/// The owner references after releasing: without the one to `uid`.
pub fn without_owner(owners: &[OwnerReference], uid: &str) -> Vec<OwnerReference> {
    owners.iter().filter(|o| o.uid != uid).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn labels(app: &str) -> BTreeMap<String, String> {
        [("app".to_owned(), app.to_owned())].into()
    }

    #[test]
    fn claim_follows_kubernetes_rules() {
        let selector = Selector::from_map(&labels("web")).expect("a valid selector");
        let me = Claimant {
            uid: "me",
            namespace: "default",
            deleting: false,
            selector: &selector,
        };
        let mine = [controller_ref("apps/v1", "ReplicaSet", "rs", "me")];
        let theirs = [controller_ref("apps/v1", "ReplicaSet", "other", "them")];
        let web = labels("web");
        let db = labels("db");
        assert_eq!(claim(&me, "default", &web, &mine, false), Claim::Owned);
        assert_eq!(claim(&me, "default", &db, &mine, false), Claim::Release);
        assert_eq!(claim(&me, "default", &web, &theirs, false), Claim::Ignore);
        assert_eq!(claim(&me, "default", &web, &[], false), Claim::Adopt);
        assert_eq!(claim(&me, "default", &web, &[], true), Claim::Ignore);
        assert_eq!(claim(&me, "other", &web, &[], false), Claim::Ignore);
        assert_eq!(claim(&me, "default", &db, &[], false), Claim::Ignore);
        let dying = Claimant {
            deleting: true,
            ..me
        };
        assert_eq!(claim(&dying, "default", &db, &mine, false), Claim::Ignore);
        assert_eq!(claim(&dying, "default", &web, &[], false), Claim::Ignore);
        assert_eq!(claim(&dying, "default", &web, &mine, false), Claim::Owned);
    }

    #[test]
    fn owner_lists_add_and_drop_by_uid() {
        let gc = OwnerReference {
            uid: "x".into(),
            ..Default::default()
        };
        let ours = controller_ref("apps/v1", "ReplicaSet", "rs", "me");
        let added = with_owner(std::slice::from_ref(&gc), ours.clone());
        assert_eq!(added, vec![gc.clone(), ours]);
        assert_eq!(without_owner(&added, "me"), vec![gc]);
    }
}

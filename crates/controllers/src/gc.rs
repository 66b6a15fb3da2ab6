//! The garbage collector's decision, as a pure function: an object whose
//! every owner reference names an owner that no longer exists (no object
//! of that kind and name, or one with another uid) is deleted
//! ([`verdict`]), as Kubernetes' garbage collector `attemptToDeleteItem`
//! does with background propagation: deleting a Deployment deletes its
//! ReplicaSets, which deletes their Pods.
//!
//! Owners being deleted with the `orphan` finalizer (what
//! `propagationPolicy: Orphan` puts on them in Kubernetes) give their
//! dependents up instead: the reference to them is removed, then the
//! finalizer ([`orphaning`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer of an owner whose dependents are to be orphaned.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// What is known about one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// It exists, with the referenced uid.
    Present,
    /// Nothing of that kind and name, or something with another uid.
    Absent,
    /// Could not tell (the kind is not served, or the lookup failed).
    Unknown,
}

/// What to do with a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some owner exists (or the object has none): leave it.
    Keep,
    /// Every owner is gone: delete it.
    Delete,
    /// Some owner could not be checked and none is known present: ask
    /// again later.
    Retry,
}

/// See the module docs; `lookup` answers for one owner reference.
pub fn verdict(
    owners: &[OwnerReference],
    mut lookup: impl FnMut(&OwnerReference) -> Owner,
) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let mut unknown = false;
    for o in owners {
        match lookup(o) {
            Owner::Present => return Verdict::Keep,
            Owner::Absent => {}
            Owner::Unknown => unknown = true,
        }
    }
    if unknown {
        Verdict::Retry
    } else {
        Verdict::Delete
    }
}

/// Whether an owner is being deleted with its dependents orphaned.
pub fn orphaning(owner: &ObjectMeta) -> bool {
    owner.deletion_timestamp.is_some()
        && owner
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == ORPHAN_FINALIZER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uid: &str) -> OwnerReference {
        OwnerReference {
            uid: uid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn deleted_only_when_every_owner_is_gone() {
        let owners = [r("a"), r("b")];
        assert_eq!(verdict(&owners, |_| Owner::Absent), Verdict::Delete);
        assert_eq!(
            verdict(&owners, |o| if o.uid == "b" {
                Owner::Present
            } else {
                Owner::Absent
            }),
            Verdict::Keep
        );
        assert_eq!(
            verdict(&owners, |o| if o.uid == "b" {
                Owner::Unknown
            } else {
                Owner::Absent
            }),
            Verdict::Retry
        );
        assert_eq!(verdict(&[], |_| Owner::Absent), Verdict::Keep);
    }

    #[test]
    fn the_orphan_finalizer_on_a_deleted_owner_orphans() {
        let mut meta = ObjectMeta {
            finalizers: Some(vec![ORPHAN_FINALIZER.into()]),
            ..Default::default()
        };
        assert!(!orphaning(&meta), "not being deleted yet");
        meta.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(orphaning(&meta));
    }
}

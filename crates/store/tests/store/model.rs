//! Property test: the store behaves like a `BTreeMap` with revisions.

use std::collections::BTreeMap;

use proptest::prelude::*;
use switchboard_store::{Error, Store};

use crate::{open, v};

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    /// Update with the current revision (`true`) or a stale one.
    Update(u8, u8, bool),
    /// Delete, with a CAS on the current revision or none.
    Delete(u8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6u8, any::<u8>()).prop_map(|(k, x)| Op::Create(k, x)),
        (0..6u8, any::<u8>(), any::<bool>()).prop_map(|(k, x, f)| Op::Update(k, x, f)),
        (0..6u8, any::<bool>()).prop_map(|(k, c)| Op::Delete(k, c)),
    ]
}

/// Model entry: (value, create_revision, mod_revision).
type Model = BTreeMap<String, (Vec<u8>, i64, i64)>;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_btreemap_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            let (_dir, store) = open();
            let mut model = Model::new();
            let mut rev = 0i64;
            for op in ops {
                match op {
                    Op::Create(k, x) => {
                        let key = format!("/m/{k}");
                        let got = store.create(&key, v(&x.to_string())).await;
                        let present = model.contains_key(&key);
                        if present {
                            assert!(matches!(got, Err(Error::AlreadyExists { .. })));
                            continue;
                        }
                        rev += 1;
                        let kv = got.expect("create of a missing key");
                        assert_eq!(kv.mod_revision, rev);
                        model.insert(key, (x.to_string().into_bytes(), rev, rev));
                    }
                    Op::Update(k, x, fresh) => {
                        let key = format!("/m/{k}");
                        let current = model.get(&key).map(|e| e.2);
                        let expected = match (current, fresh) {
                            (Some(r), true) => r,
                            (Some(r), false) => r - 1,
                            (None, _) => rev,
                        };
                        let got = store.update(&key, v(&x.to_string()), expected).await;
                        match current {
                            None => assert!(matches!(got, Err(Error::NotFound { .. }))),
                            Some(_) if !fresh => {
                                assert!(matches!(got, Err(Error::Conflict { .. })));
                            }
                            Some(_) => {
                                rev += 1;
                                let kv = got.expect("fresh update");
                                let entry = model.get_mut(&key).expect("present in model");
                                assert_eq!(kv.create_revision, entry.1);
                                entry.0 = x.to_string().into_bytes();
                                entry.2 = rev;
                            }
                        }
                    }
                    Op::Delete(k, cas) => {
                        let key = format!("/m/{k}");
                        let expected = if cas { model.get(&key).map(|e| e.2) } else { None };
                        let got = store.delete(&key, expected).await;
                        if model.remove(&key).is_some() {
                            rev += 1;
                            assert_eq!(got.expect("delete of a present key").mod_revision, rev);
                        } else {
                            assert!(matches!(got, Err(Error::NotFound { .. })));
                        }
                    }
                }
            }
            let list = store.list("/m/").await.expect("list");
            assert_eq!(list.revision, rev);
            let listed: Model = list
                .kvs
                .into_iter()
                .map(|kv| (kv.key, (kv.value.to_vec(), kv.create_revision, kv.mod_revision)))
                .collect();
            assert_eq!(listed, model);
        });
    }
}

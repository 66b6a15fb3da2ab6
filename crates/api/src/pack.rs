//! Objects' JSON held compressed: zstd against a dictionary that is itself
//! a recent object of the same type. The apiserver's watch cache holds every
//! object this way, and the controllers their stores of Services,
//! EndpointSlices and Endpoints.
//!
//! Objects of one type are mostly the same bytes: every pod of a Deployment
//! has the same spec, the same keys, the same status shape. Compressed one
//! by one, a 1.6 KB pod only halves; against another pod as the dictionary
//! it comes to about 120 bytes. The dictionary is taken from the objects as
//! they arrive (no training): the first one large enough, then a fresh one
//! each time the number packed with the current one doubles, so it follows
//! what the type holds now. Each packed object keeps its dictionary alive
//! (an `Arc`), so a dictionary goes when the last object packed with it is
//! replaced.
//!
//! Unpacking costs about a microsecond per object, paid on every list and
//! every watch event sent (and on every object a controller's sync reads);
//! the holder keeps about a tenth of the memory.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use zstd_safe::{CCtx, CDict, DCtx, DDict};

/// zstd level: the fastest; dictionaries do the work here.
const LEVEL: i32 = 1;
/// Objects shorter than this are kept as they are.
const MIN_PACK: usize = 64;
/// Objects shorter than this do not become dictionaries.
const MIN_DICT: usize = 256;
/// Objects packed with the first dictionary before the first refresh.
const FIRST_REFRESH: usize = 64;

/// One object's JSON, packed.
#[derive(Clone)]
pub struct Packed {
    data: Box<[u8]>,
    /// The length of the JSON.
    len: u32,
    /// `None`: `data` is the JSON itself.
    dict: Option<Arc<DDict<'static>>>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("len", &self.len)
            .field("packed", &self.data.len())
            .finish()
    }
}

thread_local! {
    static CCTX: RefCell<CCtx<'static>> = RefCell::new(CCtx::create());
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

impl Packed {
    /// The object kept as it is.
    pub fn plain(json: &[u8]) -> Packed {
        Packed {
            data: Box::from(json),
            len: u32::try_from(json.len()).unwrap_or(u32::MAX),
            dict: None,
        }
    }

    /// Length of the JSON.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the JSON is empty (never for an object).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn packed_len(&self) -> usize {
        self.data.len()
    }

    /// Appends the JSON to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let Some(dict) = &self.dict else {
            out.extend_from_slice(&self.data);
            return;
        };
        let start = out.len();
        out.reserve(self.len());
        let mut tail = Vec::with_capacity(self.len());
        let result = DCTX.with(|d| {
            d.borrow_mut()
                .decompress_using_ddict(&mut tail, &self.data, dict)
        });
        match result {
            Ok(n) if n == self.len() => out.extend_from_slice(&tail),
            // Only memory corruption gets here: the bytes were packed by
            // `Packer::pack` with this very dictionary.
            other => panic!(
                "a packed object does not unpack ({other:?}, {} bytes at {start})",
                self.len
            ),
        }
    }

    /// The JSON.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }
}

struct Current {
    cdict: CDict<'static>,
    ddict: Arc<DDict<'static>>,
    /// Objects packed with this dictionary.
    uses: usize,
    /// A fresh dictionary is taken at this many uses.
    refresh_at: usize,
}

/// Packs the objects of one type; see the module docs.
#[derive(Default)]
pub struct Packer {
    current: Mutex<Option<Current>>,
}

impl Packer {
    /// Packs `json`, perhaps making it the new dictionary.
    pub fn pack(&self, json: &[u8]) -> Packed {
        if json.len() < MIN_PACK || u32::try_from(json.len()).is_err() {
            return Packed::plain(json);
        }
        // Poisoning only means a panic while held; the dictionary is intact.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let refresh = current.as_ref().is_none_or(|c| c.uses >= c.refresh_at);
        if refresh && json.len() >= MIN_DICT {
            let refresh_at = current
                .as_ref()
                .map_or(FIRST_REFRESH, |c| c.refresh_at.saturating_mul(2));
            *current = Some(Current {
                cdict: CDict::create(json, LEVEL),
                ddict: Arc::new(DDict::create(json)),
                uses: 0,
                refresh_at,
            });
        }
        let Some(c) = current.as_mut() else {
            return Packed::plain(json);
        };
        c.uses += 1;
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(json.len()));
        let result = CCTX.with(|cc| {
            cc.borrow_mut()
                .compress_using_cdict(&mut out, json, &c.cdict)
        });
        match result {
            Ok(n) if n < json.len() => Packed {
                data: out.into_boxed_slice(),
                len: json.len() as u32,
                dict: Some(Arc::clone(&c.ddict)),
            },
            _ => Packed::plain(json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(i: usize) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-{i}","namespace":"bench","uid":"{i:08}-a966-4189-a9a2-09b51800c50a"}},"spec":{{"containers":[{{"name":"app","image":"registry.example/bench/app:1.0.0","ports":[{{"containerPort":8080,"name":"http"}}]}}],"nodeName":"bench-node"}},"status":{{"phase":"Running","podIP":"127.0.{}.{}"}}}}"#,
            i / 256,
            i % 256
        )
        .into_bytes()
    }

    #[test]
    fn round_trips_and_shrinks_similar_objects() {
        let packer = Packer::default();
        let mut packed = Vec::new();
        for i in 0..1000 {
            let json = pod(i);
            let p = packer.pack(&json);
            assert_eq!(p.to_vec(), json);
            assert_eq!(p.len(), json.len());
            packed.push((json, p));
        }
        // Dictionaries were replaced along the way; old objects still unpack.
        for (json, p) in &packed {
            assert_eq!(&p.to_vec(), json);
        }
        let raw: usize = packed.iter().map(|(j, _)| j.len()).sum();
        let held: usize = packed.iter().map(|(_, p)| p.packed_len()).sum();
        assert!(held * 4 < raw, "{held} of {raw} bytes");
    }

    #[test]
    fn small_and_odd_objects_stay_plain() {
        let packer = Packer::default();
        let small = br#"{"a":1}"#;
        let p = packer.pack(small);
        assert_eq!(p.packed_len(), small.len());
        assert_eq!(p.to_vec(), small);
        let mut out = b"[".to_vec();
        p.write_to(&mut out);
        assert_eq!(out, br#"[{"a":1}"#);
    }
}

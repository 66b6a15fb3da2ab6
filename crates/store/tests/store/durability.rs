//! Durability: data survives a clean reopen and a `kill -9` of the writer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use switchboard_store::Store;
use switchboard_store::embedded::Options;

use crate::{open_at, v};

/// Set in the child process: the directory of the store it writes to.
const CHILD_DIR_ENV: &str = "SWITCHBOARD_STORE_KILL9_DIR";
/// Acknowledged writes the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 200;

#[tokio::test]
async fn data_and_revision_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open_at(&dir, Options::default());
        store.create("/a", v("1")).await.expect("create");
        store.create("/b", v("1")).await.expect("create");
        store.update("/a", v("2"), 1).await.expect("update");
        store.delete("/b", None).await.expect("delete");
    }
    let store = open_at(&dir, Options::default());
    assert_eq!(store.revision().await.expect("revision"), 4);
    let a = store.get("/a").await.expect("get").expect("/a survives");
    assert_eq!((a.create_revision, a.mod_revision), (1, 3));
    assert_eq!(&a.value[..], b"2");
    assert!(
        store.get("/b").await.expect("get").is_none(),
        "delete survives"
    );
    // Revisions continue where they stopped.
    assert_eq!(
        store
            .create("/c", v("1"))
            .await
            .expect("create")
            .mod_revision,
        5
    );
    assert_eq!(store.list("").await.expect("list").revision, 5);
}

/// In the child process: write keys from several tasks forever, printing
/// each acknowledged key. In a normal test run this does nothing.
#[test]
fn kill9_writer_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let path = std::path::Path::new(&dir).join("store.redb");
        let store = switchboard_store::Embedded::open(&path, Options::default()).expect("open");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded so an orphaned child cannot run forever.
                for i in 0..100_000 {
                    let key = format!("/kill9/{t}/{i}");
                    store.create(&key, v(&key)).await.expect("create");
                    println!("ack {key}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "durability::kill9_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn writer child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(key) = line.strip_prefix("ack ")
                && lines_tx.send(key.to_owned()).is_err()
            {
                break;
            }
        }
    });

    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(key) => acked.push(key),
            Err(err) => {
                let _ = child.kill();
                panic!("child gave {} acks, then {err:?}", acked.len());
            }
        }
    }
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    reader.join().expect("reader thread");
    // Acks already in the pipe when the child died were acknowledged too.
    acked.extend(lines.try_iter());

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open_at(&dir, Options::default());
        let revision = store.revision().await.expect("revision");
        assert!(
            revision >= acked.len() as i64,
            "revision {revision} < {} acks",
            acked.len()
        );
        for key in &acked {
            let kv = store.get(key).await.expect("get");
            let kv = kv.unwrap_or_else(|| panic!("acknowledged key {key} lost after kill -9"));
            assert_eq!(&kv.value[..], key.as_bytes());
        }
    });
}

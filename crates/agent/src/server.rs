//! The agent's HTTP server, as the kubelet's read-only subset the
//! apiserver's `pods/log` proxies to: `GET /containerLogs/{ns}/{pod}/{container}`
//! (`follow`, `tailLines`, `previous`, `limitBytes`) and `GET /healthz`.

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The logs of one pod that the server can find.
#[derive(Debug, Clone)]
pub(crate) struct PodLogs {
    /// The pod's log directory.
    pub dir: PathBuf,
    /// Cancelled when the pod is gone: followers end.
    pub gone: CancellationToken,
    /// The containers that finished for good: their followers end too.
    pub finished: tokio::sync::watch::Receiver<HashSet<String>>,
}

/// The pods that have logs, by namespace and name.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pods: Mutex<HashMap<(String, String), PodLogs>>,
}

impl Registry {
    pub fn insert(&self, namespace: &str, name: &str, logs: PodLogs) {
        self.lock()
            .insert((namespace.to_owned(), name.to_owned()), logs);
    }

    /// Removes the pod if `dir` is still its entry (a pod of the same name
    /// may have replaced it).
    pub fn remove(&self, namespace: &str, name: &str, dir: &Path) {
        let mut pods = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if pods.get(&key).is_some_and(|p| p.dir == dir) {
            pods.remove(&key);
        }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<PodLogs> {
        self.lock()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PodLogs>> {
        // Every update is a single map operation, so a poisoned map is whole.
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The log file of `container` in `dir`: the current instance, or the one
/// before it.
pub(crate) fn log_path(dir: &Path, container: &str, previous: bool) -> PathBuf {
    if previous {
        dir.join(format!("{container}.previous.log"))
    } else {
        dir.join(format!("{container}.log"))
    }
}

/// The router.
pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(registry)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    #[serde(default)]
    follow: Option<String>,
    #[serde(default)]
    previous: Option<String>,
    #[serde(default)]
    tail_lines: Option<i64>,
    #[serde(default)]
    limit_bytes: Option<u64>,
}

fn truthy(v: &Option<String>) -> bool {
    // Go's strconv.ParseBool, and a bare `?follow` as true.
    matches!(
        v.as_deref(),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True")
    )
}

fn text(code: StatusCode, message: String) -> Response {
    (code, message).into_response()
}

async fn container_logs(
    State(registry): State<Arc<Registry>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(logs) = registry.get(&namespace, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod \"{pod}\" in namespace \"{namespace}\" is not running on this node"),
        );
    };
    let previous = truthy(&q.previous);
    let path = log_path(&logs.dir, &container, previous);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) if previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start"),
            );
        }
    };
    let start = match q.tail_lines {
        Some(n) if n >= 0 => match tail_offset(&mut file, n as u64).await {
            Ok(o) => o,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        _ => 0,
    };
    if let Err(e) = file.seek(SeekFrom::Start(start)).await {
        return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let follow = truthy(&q.follow) && !previous;
    let inode = file.metadata().await.map(|m| m.ino()).unwrap_or(0);
    let reader = Reader {
        file,
        path,
        inode,
        container,
        finished: logs.finished,
        gone: logs.gone,
        follow,
        remaining: q.limit_bytes.unwrap_or(u64::MAX),
        draining: false,
    };
    let stream = futures::stream::unfold(reader, |mut r| async move {
        match r.next().await {
            Some(Ok(chunk)) => Some((Ok::<Bytes, std::io::Error>(chunk), r)),
            Some(Err(e)) => Some((Err(e), r.finished())),
            None => None,
        }
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Where the last `n` lines of `file` start.
async fn tail_offset(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    // Read backwards in blocks, counting newlines; a final newline ends
    // the last line rather than starting an empty one.
    let mut pos = len;
    let mut newlines = 0u64;
    let mut buf = vec![0u8; 8192];
    let mut first_block = true;
    while pos > 0 {
        let size = (pos.min(buf.len() as u64)) as usize;
        pos -= size as u64;
        file.seek(SeekFrom::Start(pos)).await?;
        file.read_exact(&mut buf[..size]).await?;
        let block = &buf[..size];
        let mut end = size;
        if first_block {
            first_block = false;
            if block.last() == Some(&b'\n') {
                end -= 1;
            }
        }
        for i in (0..end).rev() {
            if block[i] == b'\n' {
                newlines += 1;
                if newlines == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
    }
    Ok(0)
}

struct Reader {
    file: tokio::fs::File,
    path: PathBuf,
    inode: u64,
    container: String,
    finished: tokio::sync::watch::Receiver<HashSet<String>>,
    gone: CancellationToken,
    follow: bool,
    remaining: u64,
    /// The pod is gone: read what is left, then end.
    draining: bool,
}

impl Reader {
    fn finished(mut self) -> Reader {
        self.remaining = 0;
        self
    }

    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if self.remaining == 0 {
                return None;
            }
            let want = (buf.len() as u64).min(self.remaining) as usize;
            match self.file.read(&mut buf[..want]).await {
                Ok(0) => {}
                Ok(n) => {
                    self.remaining -= n as u64;
                    buf.truncate(n);
                    return Some(Ok(Bytes::from(buf)));
                }
                Err(e) => return Some(Err(e)),
            }
            if !self.follow || self.draining {
                return None;
            }
            // A restarted container writes a new file under the same name.
            if let Ok(meta) = tokio::fs::metadata(&self.path).await
                && meta.ino() != self.inode
                && let Ok(file) = tokio::fs::File::open(&self.path).await
            {
                self.file = file;
                self.inode = meta.ino();
                continue;
            }
            if self.finished.borrow().contains(&self.container) {
                self.draining = true;
                continue;
            }
            tokio::select! {
                () = self.gone.cancelled() => self.draining = true,
                () = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn tail(content: &str, n: u64) -> String {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("f");
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("{e}"));
        let mut f = tokio::fs::File::open(&p)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let off = tail_offset(&mut f, n)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        content[off as usize..].to_owned()
    }

    #[tokio::test]
    async fn tail_lines() {
        assert_eq!(tail("a\nb\nc\n", 2).await, "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2).await, "b\nc");
        assert_eq!(tail("a\nb\nc\n", 10).await, "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0).await, "");
        assert_eq!(tail("", 3).await, "");
        let long: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&long, 2).await, "line 4998\nline 4999\n");
    }
}

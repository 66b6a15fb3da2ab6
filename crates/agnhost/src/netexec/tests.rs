use super::*;

fn state(ready: bool) -> (State, mpsc::Receiver<ExitRequest>) {
    let (exits, rx) = mpsc::channel(4);
    let state = State {
        hostname: "pod-a".to_string(),
        ready: AtomicBool::new(ready),
        terminating: AtomicBool::new(false),
        http_override: None,
        exits,
        source_ip: None,
    };
    (state, rx)
}

fn peer() -> SocketAddr {
    "127.244.0.9:40000".parse().expect("addr")
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

async fn call(state: &State, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, String) {
    let reply = handle(state, request, Some(peer())).await;
    let (parts, body) = reply.into_parts();
    let bytes = body.collect().await.expect("full body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

#[tokio::test]
async fn hostname_under_both_spellings() {
    let (state, _rx) = state(true);
    for path in ["/hostname", "/hostName"] {
        let (status, headers, body) = call(&state, get(path)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "pod-a"));
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    }
}

#[tokio::test]
async fn root_and_unknown_paths_answer_now() {
    let (state, _rx) = state(true);
    for path in ["/", "/nope/at/all"] {
        let (status, _, body) = call(&state, get(path)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("NOW: 20"), "{body}");
    }
}

#[tokio::test]
async fn echo_with_and_without_code() {
    let (state, _rx) = state(true);
    assert_eq!(
        call(&state, get("/echo?msg=hello%20world")).await.2,
        "hello world"
    );
    let (status, _, body) = call(&state, get("/echo?msg=gone&code=410")).await;
    assert_eq!((status, body.as_str()), (StatusCode::GONE, "gone"));
    let (status, _, body) = call(&state, get("/echo?msg=x&code=abc")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "argument 'code' must be an integer or empty, got \"abc\"\n"
    );
    let (status, _, _) = call(&state, get("/echo?msg=x&code=42")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn echo_reads_an_urlencoded_body_first() {
    let (state, _rx) = state(true);
    let request = Request::post("/echo?msg=query")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"msg=body")))
        .expect("request");
    assert_eq!(call(&state, request).await.2, "body");
}

#[tokio::test]
async fn clientip_is_the_peer() {
    let (state, _rx) = state(true);
    assert_eq!(call(&state, get("/clientip")).await.2, "127.244.0.9:40000");
}

#[tokio::test]
async fn header_by_key_or_all_as_json() {
    let (state, _rx) = state(true);
    let request = || {
        Request::get("/header?key=x-forwarded-for")
            .header("Host", "svc")
            .header("X-Forwarded-For", "10.0.0.1")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(Full::new(Bytes::new()))
            .expect("request")
    };
    assert_eq!(call(&state, request()).await.2, "10.0.0.1");
    let mut all = request();
    *all.uri_mut() = "/header".parse().expect("uri");
    assert_eq!(
        call(&state, all).await.2,
        r#"{"X-Forwarded-For":["10.0.0.1"],"X-Multi":["a","b"]}"#
    );
    let mut missing = request();
    *missing.uri_mut() = "/header?key=X-Absent".parse().expect("uri");
    assert_eq!(call(&state, missing).await.2, "");
}

#[test]
fn canonical_header_names() {
    assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
    assert_eq!(canonical_header_name("USER-AGENT"), "User-Agent");
}

#[tokio::test]
async fn healthz_and_readyz_follow_readiness_and_sigterm() {
    let (state, _rx) = state(false);
    assert_eq!(
        call(&state, get("/healthz")).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        call(&state, get("/readyz")).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    state.ready.store(true, Ordering::Release);
    assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
    let (status, _, body) = call(&state, get("/readyz")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    state.terminating.store(true, Ordering::Release);
    let (status, _, body) = call(&state, get("/readyz")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    );
    assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn redirect_defaults_to_found() {
    let (state, _rx) = state(true);
    let (status, headers, body) =
        call(&state, get("/redirect?location=/echo%3Fmsg%3Dfoobar")).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers[header::LOCATION], "/echo?msg=foobar");
    assert_eq!(body, "<a href=\"/echo?msg=foobar\">Found</a>.\n\n");
    let (status, headers, _) = call(&state, get("/redirect?location=hostname&code=307")).await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers[header::LOCATION], "/hostname");
}

#[tokio::test]
async fn graceful_exit_answers_then_asks_to_stop() {
    let (state, mut rx) = state(true);
    let (status, _, body) = call(&state, get("/exit?code=3&timeout=2s")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        rx.try_recv().expect("exit request"),
        ExitRequest {
            code: 3,
            stop: Stop::Graceful(Duration::from_secs(2))
        }
    );
}

#[tokio::test]
async fn immediate_exit_never_answers() {
    let (state, mut rx) = state(true);
    for (uri, code) in [("/exit?code=7", 7), ("/shutdown", 0), ("/exit?code=256", 0)] {
        let pending = tokio::time::timeout(Duration::from_millis(50), call(&state, get(uri))).await;
        assert!(pending.is_err(), "{uri} answered");
        assert_eq!(
            rx.try_recv().expect("exit request"),
            ExitRequest {
                code,
                stop: Stop::Now
            }
        );
    }
}

#[tokio::test]
async fn exit_rejects_bad_arguments_without_exiting() {
    let (state, mut rx) = state(true);
    for (uri, text) in [
        (
            "/exit?code=x",
            "argument 'code' must be an integer [0-127] or empty, got \"x\"\n",
        ),
        (
            "/exit?timeout=5",
            "argument 'timeout' must be a valid golang duration or empty, got \"5\"\n",
        ),
        (
            "/exit?wait=soon",
            "argument 'wait' must be a valid golang duration or empty, got \"soon\"\n",
        ),
    ] {
        assert_eq!(call(&state, get(uri)).await.2, text);
    }
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn unsupported_endpoints_say_so() {
    let (state, _rx) = state(true);
    for path in ["/shell?cmd=ls", "/upload"] {
        assert_eq!(call(&state, get(path)).await.0, StatusCode::NOT_IMPLEMENTED);
    }
}

#[tokio::test]
async fn http_override_replaces_every_request() {
    let (mut state, _rx) = state(true);
    state.http_override = Some("/echo?msg=overridden".to_string());
    assert_eq!(call(&state, get("/hostname")).await.2, "overridden");
    state.http_override = Some("/clientip".to_string());
    assert_eq!(call(&state, get("/")).await.2, "");
}

#[test]
fn udp_commands() {
    let peer = peer();
    assert_eq!(
        udp_reply(b"hostname", "pod-a", peer).as_deref(),
        Some("pod-a")
    );
    assert_eq!(
        udp_reply(b" HostName\n", "pod-a", peer).as_deref(),
        Some("pod-a")
    );
    assert_eq!(
        udp_reply(b"echo Hello There", "pod-a", peer).as_deref(),
        Some("hello there")
    );
    assert_eq!(
        udp_reply(b"clientip", "pod-a", peer).as_deref(),
        Some("127.244.0.9:40000")
    );
    assert_eq!(udp_reply(b"echo", "pod-a", peer), None);
    assert_eq!(udp_reply(b"what", "pod-a", peer), None);
    assert_eq!(udp_reply(b"", "pod-a", peer), None);
}

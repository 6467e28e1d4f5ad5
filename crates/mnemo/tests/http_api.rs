//! The HTTP/JSON API of a secure 3-node cluster, over HTTPS with a real
//! client: every route, its refusals (the same codes and messages as
//! gRPC), who may call what, and an OpenAPI document that matches the
//! routes.

mod support;

use std::path::Path;
use std::sync::Arc;

use mnemo_node::security::{Claims, token_key};
use mnemo_proto::v1;
use serde_json::{Value, json};
use support::{Cluster, NodeProcess, https_agent as agent};

/// One HTTP exchange: status and JSON body.
struct Http<'a> {
    agent: &'a ureq::Agent,
    base: String,
    token: Option<&'a str>,
}

impl Http<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = self.token.map(|t| format!("Bearer {t}"));
        let mut response = match (method, body) {
            ("GET" | "DELETE", None) => {
                let mut r = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            (_, body) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.send_json(body.unwrap_or(json!({})))
            }
        }
        .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }
}

fn http<'a>(node: &NodeProcess, agent: &'a ureq::Agent, token: Option<&'a str>) -> Http<'a> {
    Http {
        agent,
        base: format!("https://{}", node.http.as_ref().unwrap()),
        token,
    }
}

fn error(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
    )
}

/// Every memory id of `space`, two a page.
fn page_through(h: &Http<'_>, space: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, r) = h.call(
            "GET",
            &format!("/v1/spaces/{space}/memories?limit=2&cursor={cursor}"),
            None,
        );
        assert_eq!(status, 200, "{r}");
        ids.extend(
            r["memories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        r["next_cursor"].as_str().unwrap().clone_into(&mut cursor);
        if cursor.is_empty() {
            return ids;
        }
    }
}

/// A batch: each memory answered on its own, in order; a refused one does
/// not stop the others; the same id again is not created; an empty batch
/// is refused whole. What was written is there, read through another node.
fn batches(n1: &Http<'_>, n2: &Http<'_>) {
    let batch = json!({"ack": "quorum", "memories": [
        {"content": "the garage door code changed", "id": "b1"},
        {"content": " ", "id": "b2"},
        {"content": "the standup moved to 10am", "id": "s1"},
        {"content": "parking moved to level two"},
    ]});
    let (status, r) = n1.call("POST", "/v1/spaces/batched/memories:batch", Some(batch));
    assert_eq!(status, 200, "{r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{r}");
    assert_eq!(results[0]["remembered"]["id"], "b1", "{r}");
    assert_eq!(error(&results[1]).0, "INVALID_ARGUMENT", "{r}");
    assert!(error(&results[1]).1.contains("content"), "{r}");
    assert_eq!(results[1]["error"]["status"], 400, "{r}");
    assert_eq!(results[2]["remembered"]["created"], true, "{r}");
    assert!(results[3]["remembered"]["id"].is_string(), "{r}");
    let (status, r) = n1.call(
        "POST",
        "/v1/spaces/batched/memories:batch",
        Some(json!({"memories": [{"content": "the garage door code changed", "id": "b1"}]})),
    );
    assert_eq!(
        (status, &r["results"][0]["remembered"]["created"]),
        (200, &json!(false)),
        "{r}"
    );
    let (status, r) = n1.call(
        "POST",
        "/v1/spaces/batched/memories:batch",
        Some(json!({"memories": []})),
    );
    assert_eq!((status, error(&r).0), (400, "INVALID_ARGUMENT"), "{r}");
    assert!(error(&r).1.contains("memories"), "{r}");

    let (status, r) = n2.call("GET", "/v1/spaces/batched", None);
    assert_eq!((status, &r["memories"]), (200, &json!(3)), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_over_https() {
    let cluster = Cluster::start_secure(3, &["--http", "127.0.0.1:0"]).await;
    let certs = cluster.certs.clone().unwrap();
    let operator = agent(&certs, Some("client"));
    let n1 = http(&cluster.nodes[0], &operator, None);

    // Write: 201, then the same id again is 200 and not created.
    let body = json!({"content": "the standup moved to 10am", "id": "s1", "tags": ["work"]});
    let (status, r) = n1.call("POST", "/v1/spaces/notes/memories", Some(body.clone()));
    assert_eq!(status, 201, "{r}");
    assert_eq!(
        (r["id"].as_str(), r["space"].as_str()),
        (Some("s1"), Some("notes"))
    );
    assert!(r["served_by"].is_string() && r["created"] == true, "{r}");
    let (status, r) = n1.call("POST", "/v1/spaces/notes/memories", Some(body));
    assert_eq!((status, &r["created"]), (200, &json!(false)), "{r}");
    for i in 0..4 {
        let body = json!({"content": format!("note {i} about the garage"), "id": format!("g{i}"), "ack": "quorum"});
        let (status, r) = n1.call("POST", "/v1/spaces/notes/memories", Some(body));
        assert_eq!(status, 201, "{r}");
    }

    // Read through another node: routed like gRPC.
    let n2 = http(&cluster.nodes[1], &operator, None);
    batches(&n1, &n2);
    let (status, r) = n2.call(
        "POST",
        "/v1/spaces/notes/recall",
        Some(json!({"cue": "when is standup", "k": 3})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["memories"][0]["id"], "s1", "{r}");
    assert!(r["memories"][0]["score"].as_f64().unwrap() > 0.0);
    let (status, r) = n2.call(
        "POST",
        "/v1/spaces/notes/recall",
        Some(json!({"cue": "note", "tags": ["work"], "include_unmatched": true})),
    );
    assert_eq!(status, 200);
    assert_eq!(r["memories"].as_array().unwrap().len(), 1, "{r}");
    let (status, r) = n2.call("GET", "/v1/spaces/notes/memories/s1", None);
    assert_eq!(
        (status, &r["memory"]["content"]),
        (200, &json!("the standup moved to 10am"))
    );
    let (status, r) = n2.call("GET", "/v1/spaces/notes/memories/nope", None);
    assert_eq!(status, 404, "{r}");
    assert_eq!(error(&r).0, "NOT_FOUND");

    // Pages in id order, with a cursor.
    let ids = page_through(&n2, "notes");
    assert_eq!(ids, ["g0", "g1", "g2", "g3", "s1"]);
    let (status, r) = n2.call("GET", "/v1/spaces/notes", None);
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (&r["memories"], &r["space"]),
        (&json!(5), &json!("notes")),
        "{r}"
    );
    assert_eq!(r["replicas"].as_array().unwrap().len(), 2, "{r}");

    // Query over spaces, one of them empty.
    let (status, r) = n2.call(
        "POST",
        "/v1/query",
        Some(json!({"spaces": ["notes", "empty"], "cue": "garage", "k": 2})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["memories"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["memories"][0]["space"], "notes");

    // Consolidation runs on the primary: a plan there, a refusal elsewhere.
    let primary = cluster.locate_everywhere("notes").await.primary.unwrap().id;
    let at_primary = http(cluster.node(&primary), &operator, None);
    let (status, r) = at_primary.call(
        "POST",
        "/v1/spaces/notes/consolidate",
        Some(json!({"dry_run": true})),
    );
    assert_eq!((status, &r["dry_run"]), (200, &json!(true)), "{r}");
    let elsewhere = http(cluster.node_other_than(&[&primary]), &operator, None);
    let (status, r) = elsewhere.call("POST", "/v1/spaces/notes/consolidate", None);
    assert_eq!((status, error(&r).0), (400, "FAILED_PRECONDITION"), "{r}");

    // Forget, then the memory is gone.
    let (status, r) = n2.call("DELETE", "/v1/spaces/notes/memories/g0?ack=quorum", None);
    assert_eq!((status, &r["existed"]), (200, &json!(true)), "{r}");
    let (status, _) = n1.call("GET", "/v1/spaces/notes/memories/g0", None);
    assert_eq!(status, 404);

    let (status, r) = n1.call("GET", "/v1/status", None);
    assert_eq!(status, 200);
    assert_eq!(r["members"].as_array().unwrap().len(), 3, "{r}");
    for probe in ["/livez", "/readyz", "/health"] {
        assert_eq!(n1.call("GET", probe, None).0, 200, "{probe}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_match_grpc() {
    let cluster = Cluster::start_secure(1, &["--http", "127.0.0.1:0"]).await;
    let certs = cluster.certs.clone().unwrap();
    let operator = agent(&certs, Some("client"));
    let node = &cluster.nodes[0];
    let h = http(node, &operator, None);
    let mut grpc = node.client().await;

    // The same bad input gets gRPC's code and message, word for word.
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/notes/recall",
        Some(json!({"cue": "x", "k": 0})),
    );
    let e = grpc
        .recall(v1::RecallRequest {
            space: "notes".into(),
            cue: "x".into(),
            k: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status, error(&r)),
        (400, ("INVALID_ARGUMENT", e.message()))
    );
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/bad%20space/memories",
        Some(json!({"content": "x"})),
    );
    let e = grpc
        .remember(v1::RememberRequest {
            space: "bad space".into(),
            content: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status, error(&r)),
        (400, ("INVALID_ARGUMENT", e.message()))
    );
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/notes/memories",
        Some(json!({"content": "x", "confidence": 1.5})),
    );
    assert_eq!(status, 400);
    assert!(error(&r).1.contains("confidence"), "{r}");

    // The body itself: missing and unknown fields are named; an empty id is
    // refused rather than replaced; too large is 413.
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/notes/memories",
        Some(json!({"id": "a"})),
    );
    assert_eq!((status, error(&r).0), (400, "INVALID_ARGUMENT"));
    assert!(error(&r).1.contains("content"), "{r}");
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/notes/memories",
        Some(json!({"content": "x", "colour": "red"})),
    );
    assert!(status == 400 && error(&r).1.contains("colour"), "{r}");
    let (status, r) = h.call(
        "POST",
        "/v1/spaces/notes/memories",
        Some(json!({"content": "x", "id": ""})),
    );
    assert!(status == 400 && error(&r).1.contains("id"), "{r}");
    let (status, r) = announce_large_body(node, &certs).await;
    assert_eq!((status, error(&r).0), (413, "RESOURCE_EXHAUSTED"), "{r}");
    let (status, r) = h.call("GET", "/v1/spaces/notes/memories?limit=0", None);
    assert_eq!((status, error(&r).0), (400, "INVALID_ARGUMENT"));
    let (status, r) = h.call("DELETE", "/v1/spaces/notes/memories/a?ack=always", None);
    assert_eq!(status, 400, "{r}");
    // Nothing above wrote anything.
    let (_, r) = h.call("GET", "/v1/spaces/notes", None);
    assert_eq!(r["memories"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_as_for_grpc() {
    let cluster = Cluster::start_secure(1, &["--http", "127.0.0.1:0"]).await;
    let certs = cluster.certs.clone().unwrap();
    let node = &cluster.nodes[0];
    // None, a token out of scope, a read-only token, a token for status.
    let anonymous = agent(&certs, None);
    let (status, r) = http(node, &anonymous, None).call("GET", "/v1/spaces/notes", None);
    assert_eq!((status, error(&r).0), (401, "UNAUTHENTICATED"), "{r}");
    let key = token_key(&certs).unwrap();
    let alice = key.sign(&Claims {
        spaces: vec!["alice-*".into()],
        read_only: false,
        expires: None,
    });
    let reader = key.sign(&Claims {
        spaces: vec!["alice-*".into()],
        read_only: true,
        expires: None,
    });
    let as_alice = http(node, &anonymous, Some(&alice));
    let (status, r) = as_alice.call(
        "POST",
        "/v1/spaces/alice-notes/memories",
        Some(json!({"content": "mine"})),
    );
    assert_eq!(status, 201, "{r}");
    let (status, r) = as_alice.call("POST", "/v1/spaces/notes/recall", Some(json!({"cue": "x"})));
    assert_eq!((status, error(&r).0), (403, "PERMISSION_DENIED"));
    assert!(error(&r).1.contains("\"notes\""), "{r}");
    let (status, r) = as_alice.call(
        "POST",
        "/v1/query",
        Some(json!({"spaces": ["alice-notes", "bob"], "cue": "x"})),
    );
    assert!(status == 403 && error(&r).1.contains("\"bob\""), "{r}");
    let (status, _) = as_alice.call("GET", "/v1/status", None);
    assert_eq!(status, 403);
    let (status, r) = http(node, &anonymous, Some(&reader)).call(
        "POST",
        "/v1/spaces/alice-notes/memories",
        Some(json!({"content": "x"})),
    );
    assert!(status == 403 && error(&r).1.contains("read-only"), "{r}");

    // Plaintext to the TLS port gets no answer.
    let plain = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("http://{}/v1/spaces/notes", node.http.as_ref().unwrap());
    assert!(plain.get(&url).call().is_err() || plain.get(&url).call().unwrap().status() == 400);
}

/// Announces a 5 MiB write (headers only) over a raw TLS connection: the
/// node refuses it on the announced length, before reading any of it.
async fn announce_large_body(node: &NodeProcess, certs: &Path) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types};
    let mut roots = RootCertStore::empty();
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    for c in <pki_types::CertificateDer as pki_types::pem::PemObject>::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let token = token_key(certs).unwrap().sign(&Claims {
        spaces: vec!["*".into()],
        read_only: false,
        expires: None,
    });
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = node.http.clone().unwrap();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/spaces/notes/memories HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        5 * 1024 * 1024
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // Read the answer's head, then as much body as it announces (the
    // connection stays open: the node still expects the body it refused).
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the node closed without answering");
        answer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                break (head.to_owned(), body[..length].to_owned());
            }
        }
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Every operation of the OpenAPI document is served (a route answers it,
/// not "no such route"), and every route is in the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let cluster = Cluster::start_secure(1, &["--http", "127.0.0.1:0"]).await;
    let certs = cluster.certs.clone().unwrap();
    let operator = agent(&certs, Some("client"));
    let h = http(&cluster.nodes[0], &operator, None);
    let (status, doc) = h.call("GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let served = [
        "DELETE /v1/spaces/{space}/memories/{id}",
        "GET /v1/spaces/{space}",
        "GET /v1/spaces/{space}/memories",
        "GET /v1/spaces/{space}/memories/{id}",
        "GET /v1/status",
        "POST /v1/query",
        "POST /v1/spaces/{space}/consolidate",
        "POST /v1/spaces/{space}/memories",
        "POST /v1/spaces/{space}/memories:batch",
        "POST /v1/spaces/{space}/recall",
    ];
    assert_eq!(documented, served);
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{space}", "s").replace("{id}", "i");
        let body = (method == "POST").then(|| json!({}));
        let (status, r) = h.call(method, &path, body);
        assert!(
            status != 404 || error(&r).0 == "NOT_FOUND",
            "{op}: no route ({status} {r})"
        );
        assert_ne!(status, 405, "{op}: method not allowed");
    }
    // And a route that is not documented does not exist.
    let (status, _) = h.call("GET", "/v1/spaces", None);
    assert_eq!(status, 404);
}

/// What a web page could make a browser send is refused, and odd headers
/// or parameters get clear refusals, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_and_odd_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    let http = node.http.clone().unwrap();
    let plain = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("http://{http}/v1/spaces/notes/memories");
    let send = |request: ureq::RequestBuilder<ureq::typestate::WithBody>| {
        let mut r = request
            .send_json(json!({"content": "from a page"}))
            .unwrap();
        let body: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        (r.status().as_u16(), body)
    };
    // A page's cross-site POST (no preflight needed for a "simple" one).
    let (status, r) = send(plain.post(&url).header("origin", "http://evil.example"));
    assert_eq!((status, error(&r).0), (403, "PERMISSION_DENIED"), "{r}");
    let (status, _) = send(plain.post(&url).header("sec-fetch-site", "cross-site"));
    assert_eq!(status, 403);
    // DNS rebinding: a page's own host name pointing at 127.0.0.1.
    let (status, r) = send(plain.post(&url).header("host", "evil.example"));
    assert!(status == 403 && error(&r).1.contains("loopback"), "{r}");
    // A program on this machine is served.
    let (status, _) = send(plain.post(&url));
    assert_eq!(status, 201);

    // An absurd deadline is capped, not a crash; bad parameters are JSON
    // refusals.
    let mut r = plain
        .post(format!("http://{http}/v1/spaces/notes/recall"))
        .header(
            mnemo_node::http::api::TIMEOUT_HEADER,
            "18446744073709551615",
        )
        .send_json(json!({"cue": "page"}))
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    for path in [
        "/v1/spaces/notes/memories?limit=abc",
        "/v1/spaces/notes/memories?cursor=a&limit=-1",
    ] {
        let mut r = plain.get(format!("http://{http}{path}")).call().unwrap();
        let body: Value = r.body_mut().read_json().unwrap();
        assert_eq!(
            (r.status().as_u16(), error(&body).0),
            (400, "INVALID_ARGUMENT"),
            "{path}"
        );
    }
    let mut r = plain
        .delete(format!(
            "http://{http}/v1/spaces/notes/memories/a?ack=always"
        ))
        .call()
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(error(&body).1.contains("ack"), "{body}");
}

/// A request refused before its body was needed (here a page's cross-site
/// POST) still has its body read (and thrown away): the connection then
/// stays open for the next request. Left unread, the node would close the connection with
/// the body still arriving, and the kernel's reset could wipe the refusal
/// off the client's socket before it read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_leaves_its_connection_usable() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start("n1", dir.path(), "127.0.0.1:0", &["--http", "127.0.0.1:0"]);
    let http = node.http.clone().unwrap();
    // Refused by the gate, before any handler.
    refused_then_reused(
        &http,
        "POST",
        "/v1/spaces/notes/memories",
        "origin: http://evil.example\r\n",
        "403",
    )
    .await;
    // Refused by the router, before any handler reads the body.
    refused_then_reused(&http, "PUT", "/v1/spaces/notes/memories", "", "405").await;
    // A client that waits to be asked for its body is refused at once,
    // not invited to upload it first.
    let mut conn = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&http).await.unwrap());
    conn.get_mut()
        .write_all(
            b"POST /v1/spaces/notes/memories HTTP/1.1\r\nhost: 127.0.0.1\r\n\
              origin: http://evil.example\r\nexpect: 100-continue\r\n\
              content-type: application/json\r\ncontent-length: 1000000\r\n\r\n",
        )
        .await
        .unwrap();
    let (line, refusal) = response(&mut conn).await;
    assert!(line.starts_with("HTTP/1.1 403"), "{line} {refusal}");
}

/// Sends a memory by `method` to `path` (with `extra` headers), its body a
/// moment after its head, as a slow client sends it: the pause makes the
/// race certain (it is no synchronisation: the node answers once the body
/// is in either way). Expects `status`, then the connection to serve the next
/// request.
async fn refused_then_reused(http: &str, method: &str, path: &str, extra: &str, status: &str) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut conn = BufReader::new(tcp);
    let body = br#"{"content":"from a page"}"#;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}content-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    conn.get_mut().flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.get_mut().write_all(body).await.unwrap();
    let (line, refusal) = response(&mut conn).await;
    assert!(
        line.starts_with(&format!("HTTP/1.1 {status}")),
        "{path}: {line} {refusal}"
    );
    conn.get_mut()
        .write_all(b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut next = String::new();
    let read = conn.read_line(&mut next).await;
    assert!(
        matches!(read, Ok(n) if n > 0) && next.starts_with("HTTP/1.1 200"),
        "{path}: the connection serves the next request: {read:?} {next:?}"
    );
}

/// One HTTP/1.1 response off `conn`: its status line, and as much body as
/// its headers say.
async fn response(conn: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> (String, String) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut status = String::new();
    conn.read_line(&mut status).await.unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// On the HTTP port a connection is idle when nothing arrives on it: one
/// kept alive after its answer, or one that never says a word, is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        "n1",
        dir.path(),
        "127.0.0.1:0",
        &["--http", "127.0.0.1:0", "--connection-idle-secs", "1"],
    );
    let http = node.http.clone().unwrap();
    let mut kept = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&http).await.unwrap());
    kept.get_mut()
        .write_all(b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (line, _) = response(&mut kept).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut silent = tokio::net::TcpStream::connect(&http).await.unwrap();
    // Each ends (the bound only turns a node that keeps it for good into a
    // failure instead of a hang).
    let bound = std::time::Duration::from_secs(30);
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(bound, kept.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a kept-alive connection stays open");
    assert!(rest.is_empty(), "{rest:?}");
    let ended = tokio::time::timeout(bound, silent.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "a silent connection stays open");
}

/// The HTTP port shares the node's connection places with the gRPC port:
/// with a gRPC client holding one of two places and an HTTP connection
/// the other, one more HTTP connection is closed unanswered, while the
/// open one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_port_shares_the_connection_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        "n1",
        dir.path(),
        "127.0.0.1:0",
        &["--http", "127.0.0.1:0", "--max-connections", "2"],
    );
    let http = node.http.clone().unwrap();
    let mut grpc = node.client().await;
    grpc.recall(v1::RecallRequest {
        space: "notes".into(),
        cue: "anything".into(),
        ..Default::default()
    })
    .await
    .expect("a place for gRPC");
    let get = b"GET /livez HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let mut open = tokio::io::BufReader::new(tokio::net::TcpStream::connect(&http).await.unwrap());
    open.get_mut().write_all(get).await.unwrap();
    let (line, _) = response(&mut open).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    // Over the limit: closed without a response. (Served instead, it
    // would be kept open: the bound turns that into a failure, not a hang.)
    let mut over = tokio::net::TcpStream::connect(&http).await.unwrap();
    let _ = over.write_all(get).await;
    let mut answer = Vec::new();
    let bound = std::time::Duration::from_secs(10);
    let read = tokio::time::timeout(bound, over.read_to_end(&mut answer))
        .await
        .expect("the node closes a connection over the limit");
    assert!(
        read.is_err() || answer.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // The open connection still serves.
    open.get_mut().write_all(get).await.unwrap();
    let (line, _) = response(&mut open).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
}

/// On a secure node's HTTPS port a connection takes its place before its
/// TLS handshake: two that never start one fill a limit of two, so a
/// client's request is refused; once one of them goes, its place comes
/// back and the client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_holds_its_place() {
    // One node on its own: a cluster's start-up checks would open
    // connections of their own, closing as this test begins.
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    support::make_certs(&certs, 1);
    let flags = ["--http", "127.0.0.1:0", "--max-connections", "2"];
    let node =
        NodeProcess::start_secure(&certs, "n1", &dir.path().join("n1"), "127.0.0.1:0", &flags);
    let http = node.http.clone().unwrap();
    let livez = move || {
        let (agent, url) = (
            agent(&certs, Some("client")),
            format!("https://{http}/livez"),
        );
        tokio::task::spawn_blocking(move || agent.get(&url).call().map(|r| r.status().as_u16()))
    };
    let addr = node.http.clone().unwrap();
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _also = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Accepted in order: the request's connection comes third.
    let refused = livez().await.unwrap();
    assert!(refused.is_err(), "{refused:?}");
    drop(silent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(status) = livez().await.unwrap() {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no place came back after a silent connection closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

//! Hostile input against a real node over real gRPC: arbitrary bytes as the
//! body of every public and internal method, and well-formed messages with
//! arbitrary (often absurd) fields. Whatever comes, the node answers with a
//! clear status, a refused request changes nothing, and the node keeps
//! serving.
//!
//! `Decommission` is left out on purpose: it takes no input, and a valid
//! call stops the node.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::{Buf, BufMut};
use mnemo_node::{NodeConfig, Running};
use mnemo_proto::v1::remember_stream_response::Outcome;
use mnemo_proto::v1::{self, internal_client::InternalClient, mnemo_client::MnemoClient};
use proptest::prelude::*;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// One node for every case of this file, with its runtime.
struct Fixture {
    rt: tokio::runtime::Runtime,
    running: Running,
    channel: Channel,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new("n1", "127.0.0.1:0".parse().unwrap(), dir.path());
        config.replication_factor = 1;
        let running = rt.block_on(mnemo_node::start(config)).unwrap();
        let channel = rt.block_on(async {
            tonic::transport::Endpoint::from_shared(format!("http://{}", running.local_addr))
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        // Something to lose: a space with a memory and a tombstone.
        rt.block_on(async {
            let mut c = MnemoClient::new(channel.clone());
            c.remember(v1::RememberRequest {
                space: "kept".into(),
                id: "a".into(),
                content: "a memory that must survive".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            c.forget(v1::ForgetRequest {
                space: "kept".into(),
                id: "gone".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        });
        Fixture {
            rt,
            running,
            channel,
            _dir: dir,
        }
    })
}

/// Every space's counts and digest.
fn snapshot() -> BTreeMap<String, (u64, u64, u128)> {
    fixture()
        .running
        .node
        .store
        .spaces()
        .into_iter()
        .map(|s| (s.name, (s.memories, s.tombstones, s.digest)))
        .collect()
}

/// A refusal must say what was wrong, with a code a client can act on.
fn assert_clear(status: &tonic::Status, what: &str) {
    assert!(!status.message().is_empty(), "{what}: empty message");
    let clear = match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::PermissionDenied => true,
        // gRPC's code for a body that is not the message it should be.
        Code::Internal => status.message().contains("decode"),
        _ => false,
    };
    assert!(clear, "{what}: unclear refusal {status:?}");
}

/// Runs `call`; a refusal must be clear and change nothing.
fn check<T: std::fmt::Debug, F>(what: &str, call: F) -> Result<(), TestCaseError>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let before = snapshot();
    let result = fixture().rt.block_on(call);
    if let Err(status) = &result {
        assert_clear(status, what);
        prop_assert_eq!(&snapshot(), &before, "{} changed state: {:?}", what, status);
    }
    still_serving(what)
}

/// Sends `messages` (encoded or not) as one `RememberStream`. Each answer
/// comes in order; one that is an error is as clear as a unary refusal; a
/// stream's own error (a message that cannot be decoded) is clear too; and
/// a stream that acknowledged nothing changed nothing.
fn check_stream(what: &str, messages: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    let before = snapshot();
    let sent = messages.len();
    let (answers, ended) = fixture().rt.block_on(raw_stream(messages));
    if let Some(status) = &ended {
        assert_clear(status, what);
    } else {
        prop_assert_eq!(answers.len(), sent, "{}: one answer per message", what);
    }
    let mut acknowledged = 0;
    for (seq, answer) in answers.iter().enumerate() {
        prop_assert_eq!(answer.seq, seq as u64, "{}: answers out of order", what);
        match &answer.outcome {
            Some(Outcome::Remembered(_)) => acknowledged += 1,
            Some(Outcome::Error(e)) => {
                assert_clear(
                    &tonic::Status::new(Code::from(e.code), e.message.clone()),
                    what,
                );
            }
            None => prop_assert!(false, "{}: an answer without an outcome", what),
        }
    }
    if acknowledged == 0 {
        prop_assert_eq!(
            &snapshot(),
            &before,
            "{} changed state: {:?}",
            what,
            answers
        );
    }
    still_serving(what)
}

/// The kept memory is still there and the node still answers.
fn still_serving(what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        snapshot().get("kept").is_some_and(|k| k.0 == 1),
        "{what} lost the kept memory"
    );
    // And the node still answers.
    let mut c = MnemoClient::new(fixture().channel.clone());
    let alive = fixture().rt.block_on(c.locate(v1::LocateRequest {
        space: "kept".into(),
    }));
    prop_assert!(alive.is_ok(), "after {}: {:?}", what, alive);
    Ok(())
}

/// Sends bytes as they are and hands back the answer's bytes.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

const METHODS: [&str; 15] = [
    "/mnemo.v1.Mnemo/Remember",
    "/mnemo.v1.Mnemo/Recall",
    "/mnemo.v1.Mnemo/Forget",
    "/mnemo.v1.Mnemo/Get",
    "/mnemo.v1.Mnemo/List",
    "/mnemo.v1.Mnemo/Consolidate",
    "/mnemo.v1.Mnemo/Query",
    "/mnemo.v1.Mnemo/Locate",
    "/mnemo.v1.Mnemo/Status",
    "/mnemo.v1.Internal/Merge",
    "/mnemo.v1.Internal/Reconcile",
    "/mnemo.v1.Internal/Compare",
    "/mnemo.v1.Internal/Fetch",
    "/mnemo.v1.Internal/Spaces",
    "/mnemo.v1.Internal/Hop",
];

async fn raw_call(
    method: &'static str,
    body: Vec<u8>,
) -> Result<tonic::Response<Vec<u8>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(fixture().channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, Raw).await
}

/// A `RememberStream` of raw messages: the answers, and the stream's
/// error if it ended with one.
async fn raw_stream(
    messages: Vec<Vec<u8>>,
) -> (Vec<v1::RememberStreamResponse>, Option<tonic::Status>) {
    let mut answers = Vec::new();
    let mut grpc = tonic::client::Grpc::new(fixture().channel.clone());
    if let Err(e) = grpc.ready().await {
        return (answers, Some(tonic::Status::unavailable(e.to_string())));
    }
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/mnemo.v1.Mnemo/RememberStream");
    let request = tonic::Request::new(futures_util::stream::iter(messages));
    let mut stream = match grpc.streaming(request, path, Raw).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (answers, Some(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(bytes)) => answers
                .push(prost::Message::decode(bytes.as_slice()).expect("the node's answer decodes")),
            Ok(None) => return (answers, None),
            Err(status) => return (answers, Some(status)),
        }
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("kept".to_owned()),
        Just("a".to_owned()),
        "[a-z]{1,8}",
        ".{0,40}",
        "[a-z]{129,140}",
    ]
}

fn floats() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            any::<f32>(),
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(0.0),
            Just(1.0)
        ],
        0..6,
    )
}

fn unit() -> impl Strategy<Value = Option<f32>> {
    prop::option::of(prop_oneof![
        any::<f32>(),
        Just(f32::NAN),
        Just(-0.5f32),
        Just(0.5f32),
        Just(2.0f32)
    ])
}

fn memory() -> impl Strategy<Value = v1::Memory> {
    (
        text(),
        text(),
        floats(),
        any::<f32>(),
        any::<i64>(),
        prop::collection::vec(text(), 0..3),
        any::<bool>(),
        prop::collection::vec((text(), text(), any::<f32>()), 0..3),
        prop::option::of(any::<f32>()),
        any::<i64>(),
        prop::option::of((any::<i64>(), any::<i64>(), any::<f32>())),
    )
        .prop_map(
            |(
                id,
                content,
                embedding,
                confidence,
                created_at_ms,
                tags,
                minority,
                inputs,
                written_confidence,
                recalled_at_ms,
                decay,
            )| {
                v1::Memory {
                    id,
                    content,
                    embedding,
                    confidence,
                    written_confidence,
                    created_at_ms,
                    recalled_at_ms,
                    decay: decay.map(|(as_of_ms, half_life_ms, floor)| v1::Decay {
                        as_of_ms,
                        half_life_ms,
                        floor,
                    }),
                    tags,
                    minority,
                    merged_from: inputs
                        .into_iter()
                        .map(|(id, content, confidence)| v1::MergedInput {
                            id,
                            content,
                            confidence,
                            ..Default::default()
                        })
                        .collect(),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_to_every_method(
        method in prop::sample::select(&METHODS[..]),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check(method, raw_call(method, body))?;
    }

    #[test]
    fn arbitrary_bytes_as_stream_messages(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4),
    ) {
        check_stream("remember_stream", messages)?;
    }

    #[test]
    fn hostile_writes(
        space in text(), id in text(), content in text(), embedding in floats(),
        confidence in unit(), tags in prop::collection::vec(text(), 0..40), ack in any::<i32>(),
    ) {
        let mut c = MnemoClient::new(fixture().channel.clone());
        let request = v1::RememberRequest {
            space: space.clone(), id: id.clone(), content, embedding, confidence, tags, ack,
        };
        check_stream("remember_stream", vec![prost::Message::encode_to_vec(&request)])?;
        check("remember", c.remember(request))?;
        check("forget", c.forget(v1::ForgetRequest { space, id, ack }))?;
    }

    #[test]
    fn hostile_reads(
        space in text(), cue in text(), cue_embedding in floats(), k in prop::option::of(any::<u32>()),
        min_confidence in unit(), tags in prop::collection::vec(text(), 0..40),
        spaces in prop::collection::vec(text(), 0..300), id in text(),
        limit in prop::option::of(any::<u32>()), threshold in unit(),
    ) {
        let mut c = MnemoClient::new(fixture().channel.clone());
        check("recall", c.recall(v1::RecallRequest {
            space: space.clone(), cue: cue.clone(), cue_embedding: cue_embedding.clone(), k,
            min_confidence, tags: tags.clone(), include_unmatched: true,
        }))?;
        check("query", c.query(v1::QueryRequest {
            spaces, cue, cue_embedding, k, min_confidence, tags, include_unmatched: false,
        }))?;
        check("get", c.get(v1::GetRequest { space: space.clone(), id: id.clone() }))?;
        check("list", c.list(v1::ListRequest { space: space.clone(), cursor: id, limit }))?;
        check("locate", c.locate(v1::LocateRequest { space: space.clone() }))?;
        check("consolidate", c.consolidate(v1::ConsolidateRequest {
            space, threshold, dry_run: true,
        }))?;
    }

    /// A peer's merge may legitimately forget the kept memory, so these
    /// spaces are any but that one.
    #[test]
    fn hostile_internal_messages(
        space in text().prop_filter("a space other than kept", |s| s != "kept"),
        elements in prop::collection::vec(prop::option::of(prop_oneof![
            memory().prop_map(v1::element::Kind::Memory),
            text().prop_map(v1::element::Kind::Tombstone),
        ]), 0..6),
        message in prop::collection::vec(any::<u8>(), 0..100),
        ids in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..5),
        digests in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            prop::collection::vec(any::<u8>(), 4096),
        ],
        counts in prop_oneof![
            prop::collection::vec(any::<u64>(), 0..10),
            prop::collection::vec(any::<u64>(), 256),
        ],
    ) {
        let mut c = InternalClient::new(fixture().channel.clone());
        let elements: Vec<v1::Element> = elements.into_iter().map(|kind| v1::Element { kind }).collect();
        // A merge may apply its valid elements; the kept space must stay
        // whole (asserted by check) and nothing invalid may land.
        let invalid_only = elements.iter().all(|e| e.kind.is_none());
        let before = snapshot();
        let merged = fixture().rt.block_on(c.merge(v1::MergeRequest {
            space: space.clone(), from_node: "n2".into(), elements,
        }));
        match merged {
            Err(status) => {
                assert_clear(&status, "merge");
                prop_assert_eq!(&snapshot(), &before);
            }
            Ok(r) if invalid_only => {
                prop_assert_eq!(r.into_inner().applied, 0);
                prop_assert_eq!(&snapshot(), &before, "elements without a kind changed state");
            }
            Ok(_) => {}
        }
        check("reconcile", c.reconcile(v1::ReconcileRequest { space: space.clone(), message }))?;
        check("compare", c.compare(v1::CompareRequest { space: space.clone(), digests, counts }))?;
        check("fetch", c.fetch(v1::FetchRequest { space, ids }))?;
    }
}

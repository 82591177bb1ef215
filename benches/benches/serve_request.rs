//! Criterion: one request through a serving component in process, as the server handles
//! each admitted request (a fresh instance from the linked component; the guest's handler;
//! the response body collected), without sockets or HTTP parsing: from the instance pool a
//! service gets when its component comes from the artifact cache, and allocated on demand
//! (a component compiled in the container, without the cache), in the same run; and a
//! service whose init builds a table (`http-snap`), pre-initialised by a snapshot against
//! building it in every request's instance.

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use hyper::body::Bytes;
use triage_benches::{component, invocation};
use triage_runtime::engine::cache::{ArtifactCache, DEFAULT_MAX_BYTES};
use triage_runtime::engine::{PreloadOptions, ProxyRequests, WasmEngine, WasmtimeEngine};

fn serve_hello(c: &mut Criterion) {
    let hello = component("http-hello");
    let bytes = std::fs::read(&hello).expect("the component");
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    // One CPU, 1 GiB: the seed's limits (64 instances in the pool).
    let options = PreloadOptions {
        cpu_millis: Some(1000),
        memory_limit: Some(1 << 30),
        ..Default::default()
    };
    let pooled = WasmtimeEngine::new();
    pooled
        .preload("bench", &hello, &bytes, &cache, &options)
        .expect("preload");
    let on_demand = WasmtimeEngine::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("serve_request/http-hello");
    for (name, engine) in [("pooled", &pooled), ("on_demand", &on_demand)] {
        let requests = engine
            .proxy_requests(&invocation(&hello, &[]))
            .expect("a wasi:http/proxy");
        let answer = || runtime.block_on(answer(&requests));
        assert_eq!(&answer()[..], b"hello from wasm over http: GET /visit/42\n");
        group.bench_function(name, |b| b.iter(answer));
    }
    group.finish();
}

fn serve_snapshot(c: &mut Criterion) {
    let snap = component("http-snap");
    let bytes = std::fs::read(&snap).expect("the component");
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("serve_request/http-snap");
    for (name, init) in [
        ("snapshot", Some("wizer-initialize")),
        ("init_per_request", None),
    ] {
        let options = PreloadOptions {
            cpu_millis: Some(1000),
            memory_limit: Some(1 << 30),
            snapshot_init: init.map(str::to_owned),
            init_deadline: std::time::Duration::from_secs(30),
            ..Default::default()
        };
        let engine = WasmtimeEngine::new();
        let preloaded = engine
            .preload("bench", &snap, &bytes, &cache, &options)
            .expect("preload");
        assert_eq!(preloaded.snapshot_of.as_deref(), init);
        let requests = engine
            .proxy_requests(&invocation(&snap, &[]))
            .expect("a wasi:http/proxy");
        let answer = || runtime.block_on(answer(&requests));
        let expected = format!("from snapshot: {}, ", init.is_some());
        assert!(answer().starts_with(expected.as_bytes()));
        group.bench_function(name, |b| b.iter(answer));
    }
    group.finish();
}

/// `GET /visit/42` answered by a fresh instance: the response body.
async fn answer(requests: &ProxyRequests) -> Bytes {
    let request = hyper::Request::get("http://bench/visit/42")
        .body(Bytes::new())
        .unwrap();
    let response = requests.answer(request).await.expect("an answer");
    assert_eq!(response.status(), 200);
    response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes()
}

criterion_group!(benches, serve_hello, serve_snapshot);
criterion_main!(benches);

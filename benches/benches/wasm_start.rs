//! Criterion benches of a Wasm start's in-process steps with wasmtime: compiling a module,
//! loading it from the artifact cache, instantiating and running it from a warm
//! `InstancePre`, and starting a guest with a 16 MiB initialised heap from its snapshot.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use triage_benches::workload;
use triage_runtime::engine::cache::{ArtifactCache, DEFAULT_MAX_BYTES};
use triage_runtime::engine::{
    GuestExit, GuestInvocation, GuestStdio, PreloadOptions, WasmEngine, WasmtimeEngine,
};

fn invocation(module: &Path) -> GuestInvocation {
    GuestInvocation {
        nn: None,
        id: "bench".into(),
        module_path: module.to_path_buf(),
        export: "_start".into(),
        args: vec![module.display().to_string()],
        env: Vec::new(),
        preopens: Vec::new(),
        memory_limit: None,
        stdio: GuestStdio::Discard,
    }
}

fn snapshot(init: &str) -> PreloadOptions {
    PreloadOptions {
        snapshot_init: Some(init.into()),
        init_memory_limit: None,
    }
}

/// Instantiates the preloaded module and runs `_start` to its end.
fn start(engine: &WasmtimeEngine, inv: &GuestInvocation) {
    let guest = engine.prepare(inv).expect("prepare");
    assert_eq!(guest.run().expect("run"), GuestExit::Exited(0));
}

fn compile_and_cache(c: &mut Criterion) {
    let hello = workload("hello");
    let mut group = c.benchmark_group("first_start");
    group.sample_size(20);
    group.bench_function("compile_store_load/hello", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
                WasmtimeEngine::new()
                    .preload("bench", &hello, &cache, &PreloadOptions::default())
                    .unwrap();
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let engine = WasmtimeEngine::new();
    engine
        .preload("bench", &hello, &cache, &PreloadOptions::default())
        .unwrap();
    c.bench_function("cached_load/hello", |b| {
        b.iter(|| {
            engine
                .preload("bench", &hello, &cache, &PreloadOptions::default())
                .unwrap()
        })
    });
}

fn warm_start(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let hello = workload("hello");
    let engine = WasmtimeEngine::new();
    engine
        .preload("bench", &hello, &cache, &PreloadOptions::default())
        .unwrap();
    let inv = invocation(&hello);
    c.bench_function("warm_instance_pre/instantiate_and_start/hello", |b| {
        b.iter(|| start(&engine, &inv))
    });
}

fn snapshot_start(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let guest = workload("snapinit");
    let inv = invocation(&guest);

    let snapshotted = WasmtimeEngine::new();
    let preloaded = snapshotted
        .preload("bench", &guest, &cache, &snapshot("wizer-initialize"))
        .unwrap();
    assert!(
        preloaded.snapshot_of.is_some(),
        "snapinit was not pre-initialised"
    );
    c.bench_function("snapshot_16MiB_heap/instantiate_and_start", |b| {
        b.iter(|| start(&snapshotted, &inv))
    });

    let plain = WasmtimeEngine::new();
    plain
        .preload("bench", &guest, &cache, &PreloadOptions::default())
        .unwrap();
    let mut group = c.benchmark_group("no_snapshot_16MiB_heap");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("instantiate_init_and_start", |b| {
        b.iter(|| start(&plain, &inv))
    });
    group.finish();
}

criterion_group!(benches, compile_and_cache, warm_start, snapshot_start);
criterion_main!(benches);

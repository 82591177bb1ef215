//! Criterion benches of a Wasm start's in-process steps on one engine (`$TRIAGE_BENCH_ENGINE`):
//! compiling a module into the artifact cache, loading it from there, instantiating and
//! running it; on wasmtime also a guest with a 16 MiB initialised heap, from its snapshot
//! and without.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use triage_benches::{engine_under_test, invocation, new_engine, preload, start, workload};
use triage_oci::EngineName;
use triage_runtime::engine::cache::{ArtifactCache, DEFAULT_MAX_BYTES};
use triage_runtime::engine::PreloadOptions;

fn snapshot(init: &str) -> PreloadOptions {
    PreloadOptions {
        snapshot_init: Some(init.into()),
        init_memory_limit: None,
        init_deadline: std::time::Duration::from_secs(triage_oci::DEFAULT_SNAPSHOT_INIT_SECONDS),
        ..Default::default()
    }
}

fn compile_and_cache(c: &mut Criterion) {
    let name = engine_under_test();
    let hello = workload("hello");
    let mut group = c.benchmark_group("compile_store_load/hello");
    // A compile takes 0.1 s (Cranelift) to 2 s (LLVM): the same number in every sample.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    if name == EngineName::Wasmedge {
        group.measurement_time(Duration::from_secs(30));
    }
    group.bench_function(name.as_str(), |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |dir| {
                let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
                preload(
                    &*new_engine(name),
                    &hello,
                    &cache,
                    &PreloadOptions::default(),
                );
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let engine = new_engine(name);
    preload(&*engine, &hello, &cache, &PreloadOptions::default());
    c.benchmark_group("cached_load/hello")
        .bench_function(name.as_str(), |b| {
            b.iter(|| preload(&*engine, &hello, &cache, &PreloadOptions::default()))
        });
}

fn warm_start(c: &mut Criterion) {
    let name = engine_under_test();
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let hello = workload("hello");
    let engine = new_engine(name);
    preload(&*engine, &hello, &cache, &PreloadOptions::default());
    let inv = invocation(&hello, &[]);
    c.benchmark_group("instantiate_and_start/hello")
        .bench_function(name.as_str(), |b| b.iter(|| start(engine.as_ref(), &inv)));
}

/// Pre-initialised snapshots are wasmtime's (WasmEdge runs the module as it is).
fn snapshot_start(c: &mut Criterion) {
    if engine_under_test() != EngineName::Wasmtime {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let guest = workload("snapinit");
    let inv = invocation(&guest, &[]);

    let snapshotted = new_engine(EngineName::Wasmtime);
    let preloaded = preload(&*snapshotted, &guest, &cache, &snapshot("wizer-initialize"));
    assert!(
        preloaded.snapshot_of.is_some(),
        "snapinit was not pre-initialised"
    );
    let mut group = c.benchmark_group("instantiate_and_start/16MiB_heap");
    group.bench_function("wasmtime_from_snapshot", |b| {
        b.iter(|| start(snapshotted.as_ref(), &inv))
    });

    let plain = new_engine(EngineName::Wasmtime);
    preload(&*plain, &guest, &cache, &PreloadOptions::default());
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("wasmtime_init_at_start", |b| {
        b.iter(|| start(plain.as_ref(), &inv))
    });
    group.finish();
}

criterion_group!(benches, compile_and_cache, warm_start, snapshot_start);
criterion_main!(benches);

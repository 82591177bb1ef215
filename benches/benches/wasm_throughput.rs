//! Criterion bench of guest code's speed on one engine (`$TRIAGE_BENCH_ENGINE`): the `crunch`
//! workload's kernels run in the guest and, as the reference, compiled for this machine.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use triage_benches::{engine_under_test, invocation, new_engine, preload, start, workload};
use triage_runtime::engine::cache::{ArtifactCache, DEFAULT_MAX_BYTES};
use triage_runtime::engine::PreloadOptions;

/// The same source the `crunch` workload is built from.
#[path = "../../test-images/wasm/crunch/src/kernels.rs"]
mod kernels;

/// A kernel at one size.
struct Kernel {
    /// The bench's name.
    name: &'static str,
    /// The guest's arguments.
    args: &'static [&'static str],
    /// The same work, native.
    native: fn() -> u64,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        name: "blur_1024x1024_8passes",
        args: &["blur", "1024", "8"],
        native: || kernels::blur(1024, 8),
    },
    Kernel {
        name: "sort_1M_u32",
        args: &["sort", "1048576"],
        native: || kernels::sort(1 << 20),
    },
];

fn throughput(c: &mut Criterion) {
    let name = engine_under_test();
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let crunch = workload("crunch");
    let engine = new_engine(name);
    preload(&*engine, &crunch, &cache, &PreloadOptions::default());
    for kernel in KERNELS {
        let inv = invocation(&crunch, kernel.args);
        let mut group = c.benchmark_group(format!("throughput/{}", kernel.name));
        // Runs of tens of milliseconds: the same number of runs in every sample.
        group
            .sample_size(20)
            .sampling_mode(SamplingMode::Flat)
            .measurement_time(Duration::from_secs(10));
        // A whole guest run: instantiation (well under a millisecond) and the kernel.
        group.bench_function(name.as_str(), |b| b.iter(|| start(engine.as_ref(), &inv)));
        // The reference, measured in the same process, right after the guest.
        group.bench_function(format!("native_beside_{name}"), |b| {
            b.iter(|| std::hint::black_box((kernel.native)()))
        });
        group.finish();
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);

//! Measures library load, session creation and batch-1 inference latency for an ONNX model.
//!
//! ```sh
//! TRIAGE_ONNXRUNTIME="$(scripts/onnxruntime.sh)" cargo run --release -p triage-nn-onnxruntime \
//!     --example latency -- [MODEL [INTRA_THREADS]]
//! ```
//!
//! `MODEL` defaults to `test-images/models/digits_mlp.onnx` and takes `F32 [1, N]` (N read
//! from the model's first input); `INTRA_THREADS` defaults to 1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use triage_nn::{ExecutionTarget, NnBackend, Tensor};
use triage_nn_onnxruntime::{OnnxRuntimeBackend, OnnxRuntimeOptions};

fn median(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let library = std::env::var_os("TRIAGE_ONNXRUNTIME")
        .map(PathBuf::from)
        .ok_or("set TRIAGE_ONNXRUNTIME to a libonnxruntime.so (scripts/onnxruntime.sh)")?;
    let mut args = std::env::args().skip(1);
    let model_path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-images/models/digits_mlp.onnx")
    });
    let threads: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(1);
    let model = std::fs::read(&model_path)?;

    let mut options = OnnxRuntimeOptions::default();
    options.with_intra_threads(threads);
    let backend = OnnxRuntimeBackend::with_options(library.clone(), options);
    let start = Instant::now();
    backend.serves(ExecutionTarget::Cpu)?;
    println!(
        "library {}: loaded in {:?}",
        library.display(),
        start.elapsed()
    );

    let start = Instant::now();
    let graph = backend.load(&[&model], ExecutionTarget::Cpu)?;
    println!(
        "model {} ({} bytes), intra-op threads {threads}: first session {:?}",
        model_path.display(),
        model.len(),
        start.elapsed()
    );
    let sessions: Vec<Duration> = (0..50)
        .map(|_| {
            let start = Instant::now();
            backend
                .load(&[&model], ExecutionTarget::Cpu)
                .map(|_| start.elapsed())
        })
        .collect::<Result<_, _>>()?;
    let (p50, p90, p99) = median(sessions);
    println!("session creation, 50 more: median {p50:?}, p90 {p90:?}, p99 {p99:?}");

    // The input width: try the widths a [1, N] F32 input could have until one is accepted.
    let mut context = graph.init_context()?;
    let width = (1..=1 << 16)
        .find(|&n| {
            context
                .set_input(0, &Tensor::from_f32(vec![1, n], &vec![0.0; n as usize]))
                .is_ok()
        })
        .ok_or("the model's first input is not F32 [1, N]")?;
    let input = Tensor::from_f32(
        vec![1, width],
        &(0..width).map(|i| (i % 17) as f32).collect::<Vec<_>>(),
    );
    for _ in 0..100 {
        context.set_input(0, &input)?;
        context.compute()?;
        context.get_output(0)?;
    }
    let mut whole = Vec::with_capacity(1000);
    let mut compute = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        context.set_input(0, &input)?;
        let before_compute = Instant::now();
        context.compute()?;
        compute.push(before_compute.elapsed());
        context.get_output(0)?;
        whole.push(start.elapsed());
    }
    let (p50, p90, p99) = median(whole);
    println!("inference, batch 1, 1000 runs (set_input + compute + get_output): median {p50:?}, p90 {p90:?}, p99 {p99:?}");
    let (p50, p90, p99) = median(compute);
    println!("  compute alone: median {p50:?}, p90 {p90:?}, p99 {p99:?}");
    Ok(())
}

//! Classifies each case in a directory with a model through wasi-nn: one line per case.
//!
//! `classify MODEL CASES_DIR`: MODEL is a preloaded model's name (`load_by_name`) or the
//! path of an `.onnx` file the guest can read. Cases are the directory's files in name
//! order: `.pgm` images (P2 or P5; pixels are the features) or `.csv`/`.txt` numbers.
//! Prints `NAME LABEL PROBABILITY` per case (class names from `$LABELS`, comma-separated,
//! else the class index); `$NN_TARGET=gpu` asks for a GPU. A summary goes to stderr.
//! For benchmarks: `.f32` cases are raw little-endian floats, `$INPUT_SHAPE` (e.g.
//! `1,3,224,224`) gives the input's dimensions (default `1,FEATURES`), and `$TIMING=1`
//! adds each case's microseconds (set_input to get_output) to its line.

use std::path::Path;
use std::time::Instant;

use wasi_nn::{ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

#[path = "../cases.rs"]
mod cases;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, cases] = args.as_slice() else {
        eprintln!("usage: classify MODEL CASES_DIR");
        std::process::exit(2);
    };
    let target = match std::env::var("NN_TARGET").as_deref() {
        Ok("gpu") | Ok("GPU") => ExecutionTarget::GPU,
        _ => ExecutionTarget::CPU,
    };
    let shape: Option<Vec<usize>> = std::env::var("INPUT_SHAPE").ok().map(|s| {
        s.split(',')
            .map(|d| {
                d.trim()
                    .parse()
                    .unwrap_or_else(|_| fail(2, &format!("bad INPUT_SHAPE {s:?}")))
            })
            .collect()
    });
    let timing = std::env::var("TIMING").as_deref() == Ok("1");
    let labels: Vec<String> = std::env::var("LABELS")
        .map(|l| l.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let builder = GraphBuilder::new(GraphEncoding::Onnx, target);
    let graph = if model.ends_with(".onnx") {
        let bytes = std::fs::read(model)
            .unwrap_or_else(|e| fail(2, &format!("cannot read model {model}: {e}")));
        builder.build_from_bytes([&bytes])
    } else {
        builder.build_from_cache(model)
    }
    .unwrap_or_else(|e| fail(2, &format!("cannot load model {model}: {e}")));
    let mut context = graph
        .init_execution_context()
        .unwrap_or_else(|e| fail(2, &format!("cannot make an execution context: {e}")));

    let mut names: Vec<String> = std::fs::read_dir(cases)
        .unwrap_or_else(|e| fail(3, &format!("cannot read cases directory {cases}: {e}")))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();

    let started = Instant::now();
    let mut failed = 0;
    let mut output = vec![0f32; 1024];
    for name in &names {
        let features = match read_case(&Path::new(cases).join(name)) {
            Ok(features) => features,
            Err(e) => {
                println!("{name} error {e}");
                failed += 1;
                continue;
            }
        };
        let dims = shape.clone().unwrap_or_else(|| vec![1, features.len()]);
        let case_started = Instant::now();
        let result = context
            .set_input(0, TensorType::F32, &dims, &features)
            .and_then(|()| context.compute())
            .and_then(|()| context.get_output(0, &mut output));
        match result {
            Ok(bytes) => {
                let probabilities = &output[..bytes / 4];
                let (class, p) =
                    probabilities
                        .iter()
                        .enumerate()
                        .fold(
                            (0, f32::MIN),
                            |best, (i, &p)| if p > best.1 { (i, p) } else { best },
                        );
                let label = labels
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string());
                if timing {
                    let micros = case_started.elapsed().as_secs_f64() * 1e6;
                    println!("{name} {label} {p:.4} {micros:.0}");
                } else {
                    println!("{name} {label} {p:.4}");
                }
            }
            Err(e) => {
                println!("{name} error {e}");
                failed += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "classified {} cases in {:.1} ms ({:.1} µs per case), {failed} failed",
        names.len() - failed,
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1e6 / names.len().max(1) as f64
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn fail(code: i32, message: &str) -> ! {
    eprintln!("classify: {message}");
    std::process::exit(code)
}

/// A case's features: raw floats (`.f32`), a PGM image's pixels, or the numbers of a
/// text file.
fn read_case(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    cases::features(&bytes, path.extension().is_some_and(|e| e == "f32"))
}

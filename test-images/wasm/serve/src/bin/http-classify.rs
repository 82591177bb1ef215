//! The imaging service of the tests and benchmarks: classifies the case each request sends with a graph the container preloaded, through `wasi:nn`.
//!
//! `POST /classify/MODEL`, the body one case: a PGM image (P2 or P5), numbers (CSV or
//! whitespace), or raw little-endian `f32`s (`content-type: application/octet-stream`).
//! Header `x-input-shape` (e.g. `1,3,224,224`) gives the input's dimensions (default
//! `1,FEATURES`), `x-input-name` the model's name for its input (default `input`). Answers `200` with `LABEL PROBABILITY` (class names from
//! `$LABELS_MODEL`, comma-separated, else the class index); `400` for a case it cannot
//! read, `404` for a model the container did not preload, `500` when inference fails.

#[rustfmt::skip]
#[path = "../nn_bindings.rs"]
#[allow(warnings)]
mod nn_bindings;

#[path = "../../../src/cases.rs"]
mod cases;

use nn_bindings::wasi::nn::errors::ErrorCode;
use nn_bindings::wasi::nn::graph;
use nn_bindings::wasi::nn::tensor::{Tensor, TensorType};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

/// The largest case it reads: a 224×224 RGB image as f32s is 588 KiB.
const BODY_LIMIT: usize = 4 << 20;

struct Classify;

impl wasi::exports::http::incoming_handler::Guest for Classify {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match classify(&request) {
            Ok(answer) => (200, answer),
            Err((status, reason)) => (status, reason),
        };
        serve::respond(out, status, format!("{body}\n").as_bytes());
    }
}

fn classify(request: &IncomingRequest) -> Result<String, (u16, String)> {
    let path = request.path_with_query().unwrap_or_default();
    let Some(model) = path.strip_prefix("/classify/").filter(|m| !m.is_empty()) else {
        return Err((404, format!("no such path {path}: POST /classify/MODEL")));
    };
    if !matches!(request.method(), Method::Post) {
        return Err((405, "POST a case".to_owned()));
    }
    let header = |name: &str| {
        request
            .headers()
            .get(&name.to_owned())
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let raw = header("content-type").is_some_and(|t| t == "application/octet-stream");
    let body = serve::read_body(request, BODY_LIMIT).map_err(|e| (413, e))?;
    let features = cases::features(&body, raw).map_err(|e| (400, e))?;
    let dimensions: Vec<u32> = match header("x-input-shape") {
        Some(shape) => shape
            .split(',')
            .map(|d| d.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| (400, format!("bad x-input-shape {shape:?}")))?,
        None => vec![1, features.len() as u32],
    };

    let nn_error = |what: &str, e: nn_bindings::wasi::nn::errors::Error| {
        let status = match e.code() {
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidArgument => 400,
            _ => 500,
        };
        (status, format!("{what}: {:?}: {}", e.code(), e.data()))
    };
    let input_name = header("x-input-name").unwrap_or_else(|| "input".to_owned());
    let graph = graph::load_by_name(model).map_err(|e| nn_error("loading the model", e))?;
    let context = graph
        .init_execution_context()
        .map_err(|e| nn_error("making an execution context", e))?;
    let data: Vec<u8> = features.iter().flat_map(|f| f.to_le_bytes()).collect();
    let input = Tensor::new(&dimensions, TensorType::Fp32, &data);
    let outputs = context
        .compute(vec![(input_name, input)])
        .map_err(|e| nn_error("computing", e))?;
    let (_, probabilities) = outputs
        .first()
        .ok_or_else(|| (500, "the graph gave no output".to_owned()))?;
    let bytes = probabilities.data();
    let (class, p) = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, p)| if p > best.1 { (i, p) } else { best },
        );
    let label = std::env::var(format!("LABELS_{model}"))
        .ok()
        .and_then(|labels| labels.split(',').nth(class).map(str::to_owned))
        .unwrap_or_else(|| class.to_string());
    Ok(format!("{label} {p:.4}"))
}

wasi::http::proxy::export!(Classify with_types_in wasi);

fn main() {}

//! The real classifiers: held-out accuracy, labels and probabilities, batches, shared graphs.

use std::thread;

use serde_json::Value;
use triage_nn::{NnContext, Tensor, TensorType};

use crate::{backend, load, models_dir};

/// A model's entry in `models.json`.
struct Fixture {
    file: String,
    labels: Vec<String>,
    features: usize,
    holdout: Vec<(String, Vec<f32>)>,
}

fn fixture(file: &str) -> Fixture {
    let dir = models_dir();
    let json = std::fs::read_to_string(dir.join("models.json")).expect("models.json");
    let json: Value = serde_json::from_str(&json).expect("models.json parses");
    let entry = json["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["file"] == file)
        .unwrap_or_else(|| panic!("{file} in models.json"));
    let labels: Vec<String> = entry["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|l| l.as_str().expect("label").to_owned())
        .collect();
    let features = entry["input_features"].as_u64().expect("input_features") as usize;
    let csv = std::fs::read_to_string(dir.join(entry["holdout"].as_str().expect("holdout")))
        .expect("holdout csv");
    let mut lines = csv.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("label,f0,"), "{header}");
    let holdout = lines
        .map(|line| {
            let mut fields = line.split(',');
            let label = fields.next().expect("label").to_owned();
            let values: Vec<f32> = fields.map(|v| v.parse().expect("feature")).collect();
            assert_eq!(values.len(), features, "{line}");
            (label, values)
        })
        .collect();
    Fixture {
        file: file.to_owned(),
        labels,
        features,
        holdout,
    }
}

/// The most probable label and its probability.
fn top<'a>(labels: &'a [String], probabilities: &[f32]) -> (&'a str, f32) {
    let (i, p) = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .expect("probabilities");
    (&labels[i], *p)
}

/// Classifies every held-out row one at a time; returns the number right.
fn classify_one_by_one(context: &mut dyn NnContext, fixture: &Fixture) -> usize {
    let mut correct = 0;
    for (label, values) in &fixture.holdout {
        let input = Tensor::from_f32(vec![1, fixture.features as u32], values);
        context.set_input(0, &input).expect("set_input");
        context.compute().expect("compute");
        let output = context.get_output(0).expect("get_output");
        assert_eq!(output.ty, TensorType::F32);
        assert_eq!(output.dimensions, [1, fixture.labels.len() as u32]);
        let probabilities = output.to_f32().expect("f32");
        let sum: f32 = probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        assert!(probabilities.iter().all(|p| (0.0..=1.0).contains(p)));
        if top(&fixture.labels, &probabilities).0 == label {
            correct += 1;
        }
    }
    correct
}

fn accuracy_of(file: &str, test: &str) {
    let Some(backend) = backend(test) else { return };
    let fixture = fixture(file);
    let graph = load(&backend, &fixture.file);
    let mut context = graph.init_context().expect("context");
    let correct = classify_one_by_one(context.as_mut(), &fixture);
    let accuracy = correct as f64 / fixture.holdout.len() as f64;
    eprintln!(
        "{file}: {correct}/{} held-out rows right ({accuracy:.4})",
        fixture.holdout.len()
    );
    assert!(accuracy >= 0.95, "{file}: accuracy {accuracy}");
}

#[test]
fn the_digits_model_classifies_its_holdout_set() {
    accuracy_of(
        "digits_mlp.onnx",
        "the_digits_model_classifies_its_holdout_set",
    );
}

#[test]
fn the_breast_cancer_model_classifies_its_holdout_set() {
    accuracy_of(
        "breast_cancer_mlp.onnx",
        "the_breast_cancer_model_classifies_its_holdout_set",
    );
}

#[test]
fn a_batch_gives_the_rows_answers_and_labels_are_the_models() {
    let Some(backend) = backend("a_batch_gives_the_rows_answers_and_labels_are_the_models") else {
        return;
    };
    let fixture = fixture("digits_mlp.onnx");
    assert_eq!(
        fixture.labels,
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    let graph = load(&backend, &fixture.file);
    // The names models.json records, which wasi-nn's component interface addresses.
    assert_eq!(graph.input_names(), ["input"]);
    assert_eq!(graph.output_names(), ["probabilities"]);
    let mut context = graph.init_context().expect("context");
    let rows = fixture.holdout.len();
    let values: Vec<f32> = fixture
        .holdout
        .iter()
        .flat_map(|(_, v)| v.clone())
        .collect();
    let input = Tensor::from_f32(vec![rows as u32, fixture.features as u32], &values);
    context.set_input(0, &input).expect("set_input");
    context.compute().expect("compute");
    let output = context.get_output(0).expect("get_output");
    assert_eq!(output.dimensions, [rows as u32, 10]);
    let probabilities = output.to_f32().expect("f32");
    let predicted: Vec<&str> = probabilities
        .chunks_exact(10)
        .map(|row| top(&fixture.labels, row).0)
        .collect();
    let correct = predicted
        .iter()
        .zip(&fixture.holdout)
        .filter(|(p, (label, _))| *p == label)
        .count();
    assert!(correct as f64 / rows as f64 >= 0.95, "{correct}/{rows}");

    // Row by row gives the same answers as the batch.
    let (label, first) = &fixture.holdout[0];
    context
        .set_input(0, &Tensor::from_f32(vec![1, 64], first))
        .expect("set_input");
    context.compute().expect("compute");
    let single = context
        .get_output(0)
        .expect("get_output")
        .to_f32()
        .expect("f32");
    for (a, b) in single.iter().zip(&probabilities[..10]) {
        assert!(
            (a - b).abs() < 1e-5,
            "{single:?} vs {:?}",
            &probabilities[..10]
        );
    }
    let (top_label, p) = top(&fixture.labels, &single);
    assert_eq!(top_label, label);
    assert!(p > 0.5, "{top_label} at {p}");
}

#[test]
fn contexts_of_one_graph_compute_on_several_threads() {
    let Some(backend) = backend("contexts_of_one_graph_compute_on_several_threads") else {
        return;
    };
    let fixture = fixture("digits_mlp.onnx");
    let graph = load(&backend, &fixture.file);
    let rows = &fixture.holdout[..50];
    let answers: Vec<Vec<Vec<f32>>> = thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let mut context = graph.init_context().expect("context");
                s.spawn(move || {
                    rows.iter()
                        .map(|(_, values)| crate::infer(context.as_mut(), values))
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    for other in &answers[1..] {
        assert_eq!(other, &answers[0]);
    }
}

#[test]
fn an_empty_batch_gives_an_empty_answer() {
    let Some(backend) = backend("an_empty_batch_gives_an_empty_answer") else {
        return;
    };
    let graph = load(&backend, "digits_mlp.onnx");
    let mut context = graph.init_context().expect("context");
    context
        .set_input(0, &Tensor::from_f32(vec![0, 64], &[]))
        .expect("set_input");
    context.compute().expect("compute");
    let output = context.get_output(0).expect("get_output");
    assert_eq!(output.dimensions, [0, 10]);
    assert!(output.data.is_empty());
}

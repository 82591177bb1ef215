//! The committed test models (`test-images/models`) and their held-out cases.

use std::path::PathBuf;

/// A model trained by `test-images/models/train.py`, with its held-out cases.
#[derive(Debug, Clone, Copy)]
pub struct TestModel {
    /// The `.onnx` file's name.
    pub file: &'static str,
    /// The held-out cases' CSV (`label,f0,f1,…`, raw features).
    pub holdout: &'static str,
    /// Class names in the order of the model's output.
    pub labels: &'static [&'static str],
    /// Features per case.
    pub features: usize,
}

/// Wisconsin diagnostic breast cancer: 30 features of a digitised FNA image.
pub const BREAST_CANCER: TestModel = TestModel {
    file: "breast_cancer_mlp.onnx",
    holdout: "breast_cancer_holdout.csv",
    labels: &["malignant", "benign"],
    features: 30,
};

/// UCI optical digits: 8×8 images, pixels 0..16.
pub const DIGITS: TestModel = TestModel {
    file: "digits_mlp.onnx",
    holdout: "digits_holdout.csv",
    labels: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    features: 64,
};

/// One held-out case: its true label and its raw features.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutCase {
    /// The true class name.
    pub label: String,
    /// The features as the model takes them.
    pub features: Vec<f32>,
}

/// `test-images/models` in this checkout.
pub fn models_dir() -> PathBuf {
    super::host::workspace_root().join("test-images/models")
}

impl TestModel {
    /// The model file's path.
    pub fn path(&self) -> PathBuf {
        models_dir().join(self.file)
    }

    /// The model's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let path = self.path();
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The held-out cases, in file order.
    pub fn holdout(&self) -> Vec<HoldoutCase> {
        let path = models_dir().join(self.holdout);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.lines()
            .skip(1)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let mut fields = line.split(',');
                let label = fields.next().unwrap_or_default().to_owned();
                let features: Vec<f32> = fields
                    .map(|f| {
                        f.parse()
                            .unwrap_or_else(|e| panic!("{}: {f:?}: {e}", path.display()))
                    })
                    .collect();
                assert_eq!(features.len(), self.features, "{}: {line}", path.display());
                HoldoutCase { label, features }
            })
            .collect()
    }

    /// The class with the highest probability, and that probability.
    pub fn classify(&self, probabilities: &[f32]) -> (&'static str, f32) {
        let (index, p) =
            probabilities
                .iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (i, p)| if p > best.1 { (i, p) } else { best },
                );
        (self.labels[index], p)
    }
}

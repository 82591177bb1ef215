//! Tensors, encodings and execution targets, as wasi-nn and WasmEdge's `--nn-preload` name them.

use std::fmt;
use std::str::FromStr;

/// A model's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GraphEncoding {
    /// OpenVINO IR.
    Openvino,
    /// ONNX.
    Onnx,
    /// TensorFlow.
    Tensorflow,
    /// PyTorch (TorchScript).
    Pytorch,
    /// TensorFlow Lite.
    TensorflowLite,
    /// GGML / GGUF.
    Ggml,
    /// Let the backend guess.
    Autodetect,
}

impl GraphEncoding {
    /// The name WasmEdge's `--nn-preload` uses (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openvino => "OPENVINO",
            Self::Onnx => "ONNX",
            Self::Tensorflow => "TENSORFLOW",
            Self::Pytorch => "PYTORCH",
            Self::TensorflowLite => "TENSORFLOWLITE",
            Self::Ggml => "GGML",
            Self::Autodetect => "AUTODETECT",
        }
    }
}

impl fmt::Display for GraphEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GraphEncoding {
    type Err = String;

    /// Case-insensitive, as WasmEdge accepts it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = [
            Self::Openvino,
            Self::Onnx,
            Self::Tensorflow,
            Self::Pytorch,
            Self::TensorflowLite,
            Self::Ggml,
            Self::Autodetect,
        ];
        all.into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|e| e.as_str()).collect();
                format!("unknown encoding {s:?} (one of {})", names.join(", "))
            })
    }
}

/// Where a graph should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ExecutionTarget {
    /// The CPU.
    Cpu,
    /// A GPU.
    Gpu,
    /// A TPU (no backend here serves one; it is served as CPU with a warning).
    Tpu,
    /// The best the node has (WasmEdge's `AUTO`): a GPU where one serves, else the CPU.
    Auto,
}

impl ExecutionTarget {
    /// The name WasmEdge's `--nn-preload` uses (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Gpu => "GPU",
            Self::Tpu => "TPU",
            Self::Auto => "AUTO",
        }
    }
}

impl fmt::Display for ExecutionTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Cpu, Self::Gpu, Self::Tpu, Self::Auto]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown execution target {s:?} (one of CPU, GPU, TPU, AUTO)"))
    }
}

/// An element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    /// IEEE half.
    F16,
    /// IEEE single.
    F32,
    /// IEEE double.
    F64,
    /// Bytes.
    U8,
    /// 32-bit integers.
    I32,
    /// 64-bit integers.
    I64,
}

impl TensorType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::F16 => 2,
            Self::F32 | Self::I32 => 4,
            Self::F64 | Self::I64 => 8,
        }
    }
}

/// A tensor as the guest passes it: dimensions, element type, little-endian bytes.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub dimensions: Vec<u32>,
    /// Element type.
    pub ty: TensorType,
    /// The elements, little-endian, row-major.
    pub data: Vec<u8>,
}

impl Tensor {
    /// The number of elements the dimensions describe.
    pub fn element_count(&self) -> usize {
        self.dimensions.iter().map(|&d| d as usize).product()
    }

    /// Checks that the data holds exactly the elements the dimensions describe.
    pub fn check(&self) -> Result<(), String> {
        let want = self.element_count() * self.ty.size();
        if self.data.len() == want {
            Ok(())
        } else {
            Err(format!(
                "tensor {:?} of {:?} needs {want} bytes, got {}",
                self.dimensions,
                self.ty,
                self.data.len()
            ))
        }
    }

    /// An `F32` tensor from values.
    pub fn from_f32(dimensions: Vec<u32>, values: &[f32]) -> Self {
        Self {
            dimensions,
            ty: TensorType::F32,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values of an `F32` tensor, or `None` for another type.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.ty == TensorType::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dimensions", &self.dimensions)
            .field("ty", &self.ty)
            .field("bytes", &self.data.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_and_targets_parse_as_wasmedge_writes_them() {
        assert_eq!("ONNX".parse(), Ok(GraphEncoding::Onnx));
        assert_eq!("onnx".parse(), Ok(GraphEncoding::Onnx));
        assert_eq!("GGML".parse(), Ok(GraphEncoding::Ggml));
        assert_eq!("AUTO".parse(), Ok(ExecutionTarget::Auto));
        assert_eq!("gpu".parse(), Ok(ExecutionTarget::Gpu));
        let err = "onyx".parse::<GraphEncoding>().unwrap_err();
        assert!(err.contains("\"onyx\"") && err.contains("ONNX"), "{err}");
        let err = "NPU".parse::<ExecutionTarget>().unwrap_err();
        assert!(err.contains("\"NPU\""), "{err}");
    }

    #[test]
    fn f32_tensors_round_trip_and_sizes_are_checked() {
        let t = Tensor::from_f32(vec![1, 3], &[1.0, -2.5, 3.25]);
        assert_eq!(t.check(), Ok(()));
        assert_eq!(t.to_f32(), Some(vec![1.0, -2.5, 3.25]));
        let short = Tensor {
            data: vec![0; 8],
            ..t
        };
        let err = short.check().unwrap_err();
        assert!(err.contains("needs 12 bytes, got 8"), "{err}");
    }
}

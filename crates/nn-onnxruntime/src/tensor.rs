//! Between wasi-nn tensors (little-endian bytes) and ONNX Runtime values, without `ndarray`.

use std::fmt::Debug;

use ort::value::{DynValue, PrimitiveTensorElementType, TensorElementType, ValueType};
use triage_nn::{Tensor, TensorType};

/// The wasi-nn type of an ONNX element type, where there is one this backend passes.
pub(crate) fn wasi_type(ty: TensorElementType) -> Option<TensorType> {
    Some(match ty {
        TensorElementType::Float32 => TensorType::F32,
        TensorElementType::Float64 => TensorType::F64,
        TensorElementType::Uint8 => TensorType::U8,
        TensorElementType::Int32 => TensorType::I32,
        TensorElementType::Int64 => TensorType::I64,
        TensorElementType::Float16 => TensorType::F16,
        _ => return None,
    })
}

/// An ONNX element type named as wasi-nn names types (`F32`), or as ONNX Runtime does when
/// wasi-nn has no such type.
pub(crate) fn type_name(ty: TensorElementType) -> String {
    match wasi_type(ty) {
        Some(t) => format!("{t:?}"),
        None => format!("{ty:?}"),
    }
}

/// A guest tensor as an ONNX Runtime value (one copy of the data). `F16` is refused.
pub(crate) fn to_value(tensor: &Tensor) -> Result<DynValue, String> {
    let shape: Vec<i64> = tensor.dimensions.iter().map(|&d| i64::from(d)).collect();
    let data = &tensor.data;
    let value = match tensor.ty {
        TensorType::F32 => owned(shape, data, f32::from_le_bytes),
        TensorType::F64 => owned(shape, data, f64::from_le_bytes),
        TensorType::U8 => owned(shape, data, u8::from_le_bytes),
        TensorType::I32 => owned(shape, data, i32::from_le_bytes),
        TensorType::I64 => owned(shape, data, i64::from_le_bytes),
        TensorType::F16 => return Err(F16.to_owned()),
    };
    value.map_err(|e| e.to_string())
}

/// Why `F16` tensors are refused.
pub(crate) const F16: &str =
    "F16 tensors are not supported by the onnxruntime backend (use F32, F64, U8, I32 or I64)";

fn owned<T, const N: usize>(
    shape: Vec<i64>,
    bytes: &[u8],
    from_le: fn([u8; N]) -> T,
) -> ort::Result<DynValue>
where
    T: PrimitiveTensorElementType + Debug + Clone + 'static,
{
    let values: Vec<T> = bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut element = [0; N];
            element.copy_from_slice(chunk);
            from_le(element)
        })
        .collect();
    Ok(ort::value::Tensor::from_array((shape, values))?.into_dyn())
}

/// An output value as a guest tensor.
pub(crate) fn from_value(value: &DynValue) -> Result<Tensor, String> {
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => return Err(format!("it is not a tensor but a {other:?}")),
    };
    let tensor = match ty {
        TensorElementType::Float32 => copied(value, TensorType::F32, f32::to_le_bytes),
        TensorElementType::Float64 => copied(value, TensorType::F64, f64::to_le_bytes),
        TensorElementType::Uint8 => copied(value, TensorType::U8, u8::to_le_bytes),
        TensorElementType::Int32 => copied(value, TensorType::I32, i32::to_le_bytes),
        TensorElementType::Int64 => copied(value, TensorType::I64, i64::to_le_bytes),
        TensorElementType::Float16 => return Err(F16.to_owned()),
        other => {
            return Err(format!(
                "its elements are {other:?}, which wasi-nn cannot pass (F32, F64, U8, I32 or I64)"
            ))
        }
    };
    tensor.map_err(|e| e.to_string())?
}

fn copied<T, const N: usize>(
    value: &DynValue,
    ty: TensorType,
    to_le: fn(T) -> [u8; N],
) -> ort::Result<Result<Tensor, String>>
where
    T: PrimitiveTensorElementType + Copy,
{
    let (shape, elements) = value.try_extract_tensor::<T>()?;
    let dimensions: Result<Vec<u32>, String> = shape
        .iter()
        .map(|&d| {
            u32::try_from(d)
                .map_err(|_| format!("dimension {d} of {shape:?} does not fit wasi-nn's u32"))
        })
        .collect();
    Ok(dimensions.map(|dimensions| Tensor {
        dimensions,
        ty,
        data: elements.iter().flat_map(|&e| to_le(e)).collect(),
    }))
}

/// A model's dimensions as text, `?` for the dynamic ones: `[?, 64]`.
pub(crate) fn shape_text(dims: &[i64]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_wasi_nn_where_it_has_the_type() {
        assert_eq!(type_name(TensorElementType::Float32), "F32");
        assert_eq!(type_name(TensorElementType::Int64), "I64");
        assert_eq!(type_name(TensorElementType::Bool), "Bool");
        assert_eq!(wasi_type(TensorElementType::Int8), None);
    }

    #[test]
    fn shapes_show_dynamic_dimensions() {
        assert_eq!(shape_text(&[-1, 64]), "[?, 64]");
        assert_eq!(shape_text(&[]), "[]");
    }
}

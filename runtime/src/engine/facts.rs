//! What Triage reads of a module before any engine compiles it: exports, start function, imports.

use wasmparser::{ExternalKind, Parser, Payload};

/// What Triage needs to know of a module before compiling it.
pub struct ModuleFacts {
    /// The names of its function exports, in order.
    pub function_exports: Vec<String>,
    /// Whether it has a start function (instantiating it runs guest code).
    pub has_start_function: bool,
    /// Whether it imports wasi-nn ([`super::WASI_NN_MODULE`]).
    pub uses_wasi_nn: bool,
}

impl ModuleFacts {
    /// Reads the facts of container `id`'s module at `path`; bytes that do not parse are
    /// an invalid module.
    pub fn of(id: &str, path: &std::path::Path, bytes: &[u8]) -> Result<Self, super::EngineError> {
        Self::read(bytes).map_err(|e| super::EngineError::invalid(id, path, e.to_string()))
    }

    /// `Ok` when `export` is one of the module's function exports, else the error that
    /// lists them.
    pub fn require_export(
        exports: &[String],
        id: &str,
        path: &std::path::Path,
        export: &str,
    ) -> Result<(), super::EngineError> {
        if exports.iter().any(|name| name == export) {
            return Ok(());
        }
        Err(super::EngineError::MissingExport {
            id: id.to_owned(),
            path: path.to_path_buf(),
            export: export.to_owned(),
            available: exports.join(", "),
        })
    }

    /// Reads the module's sections; fails where they do not parse.
    pub fn read(bytes: &[u8]) -> Result<Self, wasmparser::BinaryReaderError> {
        let mut facts = Self {
            function_exports: Vec::new(),
            has_start_function: false,
            uses_wasi_nn: false,
        };
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export?;
                        if export.kind == ExternalKind::Func {
                            facts.function_exports.push(export.name.to_owned());
                        }
                    }
                }
                Payload::StartSection { .. } => facts.has_start_function = true,
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        if import?.module == super::WASI_NN_MODULE {
                            facts.uses_wasi_nn = true;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(facts)
    }
}

/// Modules the engines' unit tests share.
#[cfg(all(test, any(feature = "wasmtime", feature = "wasmedge")))]
pub(crate) mod fixtures {
    // (module (func (export "_start")) (func (export "greet")))
    pub(crate) const TWO_EXPORTS: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x03, 0x03, 0x02, 0x00, 0x00, // func section: 2 funcs of type 0
        0x07, 0x12, 0x02, // export section, 2 exports
        0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, //
        0x05, b'g', b'r', b'e', b'e', b't', 0x00, 0x01, //
        0x0a, 0x07, 0x02, 0x02, 0x00, 0x0b, 0x02, 0x00, 0x0b, // code
    ];
}

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

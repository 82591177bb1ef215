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
    /// The functions it imports that reach out of the pod by themselves (WasmEdge's socket
    /// extension to WASI preview 1: [`OUTBOUND_SOCKET_FUNCTIONS`]), in import order.
    pub outbound_socket_imports: Vec<String>,
}

/// WasmEdge's preview-1 socket functions that connect, send to an address or resolve a
/// name (binding, listening and accepting only answer the pod's clients).
pub const OUTBOUND_SOCKET_FUNCTIONS: &[&str] = &[
    "sock_connect",
    "sock_send_to",
    "sock_getaddrinfo",
    "sock_lookup_ip",
];

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
            outbound_socket_imports: Vec::new(),
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
                        let import = import?;
                        if import.module == super::WASI_NN_MODULE {
                            facts.uses_wasi_nn = true;
                        }
                        if import.module == "wasi_snapshot_preview1"
                            && OUTBOUND_SOCKET_FUNCTIONS.contains(&import.name)
                            && !facts
                                .outbound_socket_imports
                                .iter()
                                .any(|n| n == import.name)
                        {
                            facts.outbound_socket_imports.push(import.name.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(facts)
    }
}

/// What a component is for, from its top-level exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentWorld {
    /// It exports `wasi:cli/run` (a `wasi:cli/command`): it runs to an exit, as a module's
    /// `_start` does.
    Command,
    /// It exports `wasi:http/incoming-handler` (a `wasi:http/proxy`): it is served, one
    /// instance per request.
    HttpProxy,
}

/// The export of a command component.
pub const CLI_RUN: &str = "wasi:cli/run@0.2";
/// The export of an HTTP proxy component.
pub const HTTP_INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";
/// WASI 0.3's HTTP handler, which this build does not serve.
pub const HTTP_HANDLER_P3: &str = "wasi:http/handler@0.3";

impl ComponentWorld {
    /// Reads a component's top-level exports (not those of the modules and components
    /// nested in it): a proxy when it exports the HTTP handler, else a command when it
    /// exports `run`; the error lists what it exports instead.
    pub fn of(id: &str, path: &std::path::Path, bytes: &[u8]) -> Result<Self, super::EngineError> {
        let invalid = |reason: String| super::EngineError::invalid(id, path, reason);
        let exports = Self::top_level_exports(bytes).map_err(|e| invalid(e.to_string()))?;
        let has = |prefix: &str| exports.iter().any(|name| name.starts_with(prefix));
        if has(HTTP_INCOMING_HANDLER) {
            Ok(Self::HttpProxy)
        } else if has(CLI_RUN) {
            Ok(Self::Command)
        } else if has(HTTP_HANDLER_P3) {
            Err(invalid(format!(
                "it exports WASI 0.3's {HTTP_HANDLER_P3}.x, which this build does not serve (wasmtime 48 has it only as an unstable feature); build it for WASI 0.2 ({HTTP_INCOMING_HANDLER}.x)"
            )))
        } else {
            Err(invalid(format!(
                "a component must export {CLI_RUN}.x (a command) or {HTTP_INCOMING_HANDLER}.x (an HTTP proxy); it exports: {}",
                if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
            )))
        }
    }

    /// The names a component exports at its top level.
    pub fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>, wasmparser::BinaryReaderError> {
        Ok(top_level_names(bytes)?.exports)
    }

    /// Whether a component imports wasi-nn's component interface ([`WASI_NN_PACKAGE`]).
    pub fn imports_wasi_nn(
        id: &str,
        path: &std::path::Path,
        bytes: &[u8],
    ) -> Result<bool, super::EngineError> {
        let names = top_level_names(bytes)
            .map_err(|e| super::EngineError::invalid(id, path, e.to_string()))?;
        Ok(names
            .imports
            .iter()
            .any(|name| name.starts_with(WASI_NN_PACKAGE)))
    }
}

/// The package of wasi-nn's component interface (`wasi:nn/graph@…` and its siblings).
pub const WASI_NN_PACKAGE: &str = "wasi:nn/";

/// The names a component imports and exports at its top level.
struct TopLevelNames {
    imports: Vec<String>,
    exports: Vec<String>,
}

fn top_level_names(bytes: &[u8]) -> Result<TopLevelNames, wasmparser::BinaryReaderError> {
    let mut names = TopLevelNames {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    // Nested modules and components come inline, each between its own header and end.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    names.exports.push(export?.name.name.to_owned());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    names.imports.push(import?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(names)
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

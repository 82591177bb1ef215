//! Which Wasm engine runs a container (`triage.io/engine`, the node's `[wasm] engine`), and why.

use serde::{Deserialize, Serialize};

/// A Wasm engine Triage knows, whether or not this build has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EngineName {
    /// wasmtime with Cranelift (the default build's engine).
    Wasmtime,
    /// WasmEdge, through the system's libwasmedge (cargo feature `wasmedge`).
    Wasmedge,
}

impl EngineName {
    /// Every engine, in the order messages list them.
    pub const ALL: [EngineName; 2] = [EngineName::Wasmtime, EngineName::Wasmedge];

    /// The name as annotations and the node profile spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasmtime => "wasmtime",
            Self::Wasmedge => "wasmedge",
        }
    }

    /// Parses `wasmtime` or `wasmedge` (surrounding blanks ignored).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text.trim())
    }
}

impl std::fmt::Display for EngineName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What chose a container's engine, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineSource {
    /// The container's `triage.io/engine` annotation.
    Annotation,
    /// The node profile's `[wasm] engine`.
    NodeProfile,
    /// Neither: the engine this build prefers.
    BuildDefault,
}

/// The engine a Wasm container runs in, and what chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineChoice {
    /// The engine.
    pub engine: EngineName,
    /// What chose it.
    pub source: EngineSource,
}

impl EngineChoice {
    /// The container's annotation wins over the node's setting, which wins over the build's
    /// default.
    pub fn settle(
        annotation: Option<EngineName>,
        node: Option<EngineName>,
        build_default: EngineName,
    ) -> Self {
        match (annotation, node) {
            (Some(engine), _) => Self {
                engine,
                source: EngineSource::Annotation,
            },
            (None, Some(engine)) => Self {
                engine,
                source: EngineSource::NodeProfile,
            },
            (None, None) => Self {
                engine: build_default,
                source: EngineSource::BuildDefault,
            },
        }
    }

    /// Why this engine, for logs and errors: `annotation triage.io/engine=wasmedge`.
    pub fn reason(&self) -> String {
        match self.source {
            EngineSource::Annotation => {
                format!("annotation {}={}", crate::annotations::ENGINE, self.engine)
            }
            EngineSource::NodeProfile => {
                format!("node profile [wasm] engine = {:?}", self.engine.as_str())
            }
            EngineSource::BuildDefault => "the default of this build".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_as_annotations_spell_them() {
        for engine in EngineName::ALL {
            assert_eq!(EngineName::parse(engine.as_str()), Some(engine));
        }
        assert_eq!(EngineName::parse(" wasmedge\n"), Some(EngineName::Wasmedge));
        assert_eq!(EngineName::parse("WasmEdge"), None);
        assert_eq!(EngineName::parse("wamr"), None);
        assert_eq!(EngineName::Wasmedge.to_string(), "wasmedge");
    }

    #[test]
    fn the_annotation_wins_then_the_node_then_the_build() {
        use EngineName::*;
        let both = EngineChoice::settle(Some(Wasmedge), Some(Wasmtime), Wasmtime);
        assert_eq!(
            (both.engine, both.source),
            (Wasmedge, EngineSource::Annotation)
        );
        assert_eq!(both.reason(), "annotation triage.io/engine=wasmedge");
        let node = EngineChoice::settle(None, Some(Wasmedge), Wasmtime);
        assert_eq!(
            (node.engine, node.source),
            (Wasmedge, EngineSource::NodeProfile)
        );
        assert_eq!(node.reason(), "node profile [wasm] engine = \"wasmedge\"");
        let build = EngineChoice::settle(None, None, Wasmtime);
        assert_eq!(
            (build.engine, build.source),
            (Wasmtime, EngineSource::BuildDefault)
        );
        assert_eq!(build.reason(), "the default of this build");
    }
}

//! Finds the container's entrypoint in its filesystem and tells what kind of file it is.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::Bundle;
use crate::container_fs::{ContainerFile, ContainerFs, OpenError};
use crate::error::PlanError;

/// What the first bytes of the entrypoint say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntrypointKind {
    /// `\0asm`: a WebAssembly module or component.
    Wasm,
    /// `\x7fELF`: a native executable.
    Elf,
    /// `#!`: a script for an interpreter.
    Script,
    /// Anything else (left to the kernel, e.g. binfmt_misc).
    Other,
}

impl EntrypointKind {
    /// Classifies a file by its leading bytes.
    pub fn from_magic(head: &[u8]) -> Self {
        if head.starts_with(b"\0asm") {
            Self::Wasm
        } else if head.starts_with(b"\x7fELF") {
            Self::Elf
        } else if head.starts_with(b"#!") {
            Self::Script
        } else {
            Self::Other
        }
    }

    /// A short human description, used in decisions and errors.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Wasm => "a wasm module",
            Self::Elf => "an ELF executable",
            Self::Script => "a script (#!)",
            Self::Other => "neither wasm nor ELF",
        }
    }
}

/// The entrypoint as found in the container's filesystem.
#[derive(Debug, Clone)]
pub struct Entrypoint {
    /// The path the container sees.
    pub container_path: PathBuf,
    /// The file, open (see [`crate::container_fs`]).
    pub file: Arc<ContainerFile>,
    /// What the file is.
    pub kind: EntrypointKind,
    /// For Wasm, whether it is a core module or a component.
    pub wasm_form: Option<crate::plan::WasmForm>,
}

impl Entrypoint {
    /// What the file is, for decisions and errors: as [`EntrypointKind::describe`], with
    /// a component told from a module.
    pub fn describe(&self) -> &'static str {
        match (self.kind, self.wasm_form) {
            (EntrypointKind::Wasm, Some(crate::plan::WasmForm::Component)) => "a wasm component",
            (kind, _) => kind.describe(),
        }
    }

    /// Locates `program` (a path, or a name searched in the spec's `PATH`) as the
    /// container will see it and reads its magic. `Ok(None)` when no regular file is
    /// there (what is not one is skipped, as `execvp` skips what it cannot run).
    pub fn locate(
        bundle: &Bundle,
        fs: &ContainerFs,
        program: &str,
    ) -> Result<Option<Self>, PlanError> {
        let candidates: Vec<PathBuf> = if program.contains('/') {
            vec![bundle.cwd().join(program)]
        } else {
            bundle
                .search_path()
                .split(':')
                .filter(|dir| dir.starts_with('/'))
                .map(|dir| Path::new(dir).join(program))
                .collect()
        };
        for container_path in candidates {
            let unreadable = |source| PlanError::EntrypointUnreadable {
                id: bundle.id.clone(),
                path: container_path.clone(),
                source,
            };
            let file = match fs.open(&container_path, None) {
                Ok(file) => file,
                Err(OpenError::NotFound | OpenError::NotRegular(_) | OpenError::OnMount { .. }) => {
                    continue
                }
                Err(other) => return Err(unreadable(other.into())),
            };
            let head = read_head(&file).map_err(unreadable)?;
            return Ok(Some(Self {
                container_path,
                file: Arc::new(file),
                kind: EntrypointKind::from_magic(&head),
                wasm_form: crate::plan::WasmForm::from_header(&head),
            }));
        }
        Ok(None)
    }
}

/// The file's first 8 bytes (fewer for a shorter file): the magic and, for Wasm, the
/// version and layer that tell a module from a component.
fn read_head(file: &ContainerFile) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 8];
    let mut filled = 0;
    while filled < head.len() {
        match file.file.read_at(&mut head[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(head[..filled].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic() {
        assert_eq!(
            EntrypointKind::from_magic(b"\0asm\x01\0\0\0"),
            EntrypointKind::Wasm
        );
        assert_eq!(EntrypointKind::from_magic(b"\x7fELF"), EntrypointKind::Elf);
        assert_eq!(
            EntrypointKind::from_magic(b"#!/bin/sh"),
            EntrypointKind::Script
        );
        assert_eq!(EntrypointKind::from_magic(b"\0as"), EntrypointKind::Other);
        assert_eq!(EntrypointKind::from_magic(b""), EntrypointKind::Other);
    }

    #[test]
    fn a_component_is_told_from_a_module_by_its_header() {
        use crate::plan::WasmForm;
        assert_eq!(
            WasmForm::from_header(b"\0asm\x01\0\0\0"),
            Some(WasmForm::Module)
        );
        assert_eq!(
            WasmForm::from_header(b"\0asm\x0d\0\x01\0"),
            Some(WasmForm::Component)
        );
        assert_eq!(WasmForm::from_header(b"\0asm"), Some(WasmForm::Module));
        assert_eq!(WasmForm::from_header(b"\x7fELF\x02\x01\x01\0"), None);
    }
}

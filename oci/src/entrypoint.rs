//! Finds the container's entrypoint in its filesystem and tells what kind of file it is.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::bundle::Bundle;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// The path the container sees.
    pub container_path: PathBuf,
    /// The host file backing it.
    pub host_path: PathBuf,
    /// What the file is.
    pub kind: EntrypointKind,
}

impl Entrypoint {
    /// Locates `program` (a path, or a name searched in the spec's `PATH`) and reads its
    /// magic. `Ok(None)` when it does not exist.
    pub fn locate(bundle: &Bundle, program: &str) -> Result<Option<Self>, PlanError> {
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
            let Ok(host_path) = bundle.host_path(&container_path) else {
                continue;
            };
            if !host_path.is_file() {
                continue;
            }
            let kind = read_kind(&host_path).map_err(|source| PlanError::EntrypointUnreadable {
                id: bundle.id.clone(),
                path: host_path.clone(),
                source,
            })?;
            return Ok(Some(Self {
                container_path,
                host_path,
                kind,
            }));
        }
        Ok(None)
    }
}

fn read_kind(path: &Path) -> std::io::Result<EntrypointKind> {
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(EntrypointKind::from_magic(&head[..filled]))
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
}

//! The test images: what each contains, and where its files come from.

use std::path::Path;

use anyhow::Context;

/// One file-system entry of a layer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Path in the image, without leading `/`.
        path: String,
    },
    /// A regular file.
    File {
        /// Path in the image.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Contents.
        content: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Path in the image.
        path: String,
        /// Link target.
        target: String,
    },
}

/// An image to build.
#[derive(Debug, Clone)]
pub struct Image {
    /// Full reference, e.g. `triage.test/wasm:latest`.
    pub reference: String,
    /// Archive file name without `.tar`.
    pub file_stem: String,
    /// Config `os`.
    pub os: String,
    /// Config `architecture`.
    pub architecture: String,
    /// Config `Cmd` (`None`: the image names no command).
    pub cmd: Option<Vec<String>>,
    /// Config `Env`.
    pub env: Vec<String>,
    /// The single layer's entries.
    pub entries: Vec<Entry>,
}

/// The Wasm workloads the image carries, as `NAME.wasm` at its root.
pub const WASM_WORKLOADS: &[&str] = &[
    "hello",
    "exit",
    "trap",
    "sleeper",
    "fsprobe",
    "reactor",
    "spin",
    "memhog",
    "waiter",
    "snapinit",
    "classify",
    "listen-echo",
];

/// The Wasm workloads built as WASI 0.2 components, and the HTTP services, in the
/// components image (`os: wasip2`).
pub const COMPONENT_WORKLOADS: &[&str] = &[
    "hello",
    "exit",
    "trap",
    "spin",
    "memhog",
    "http-hello",
    "http-state",
    "http-egress",
    "tcp-echo",
    "http-classify",
    "http-snap",
];

/// The trained test models (`test-images/models`), put in the wasm and components images
/// under `/models`.
pub const MODELS: &[&str] = &["digits_mlp.onnx", "breast_cancer_mlp.onnx"];

/// Applets linked to busybox in the native image.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "true", "false", "sleep", "cat", "ls", "env", "id", "kill", "ps", "test", "dd",
];

/// Not a module: the magic is right, the rest is garbage.
const INVALID_WASM: &[u8] = b"\0asm\x01\0\0\0\x01\xff\xff\xff\xffnot really wasm";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// All test images.
pub fn all(
    wasm_dir: &Path,
    components_dir: &Path,
    models_dir: &Path,
    busybox: &Path,
) -> anyhow::Result<Vec<Image>> {
    let mut model_entries = vec![Entry::Dir {
        path: "models".into(),
    }];
    for name in MODELS {
        let file = models_dir.join(name);
        let content =
            std::fs::read(&file).with_context(|| format!("reading model {}", file.display()))?;
        model_entries.push(Entry::File {
            path: format!("models/{name}"),
            mode: 0o644,
            content,
        });
    }
    let mut component_entries = vec![Entry::Dir { path: "etc".into() }];
    component_entries.extend(model_entries.iter().cloned());
    for name in COMPONENT_WORKLOADS {
        let file = components_dir.join(format!("{name}.wasm"));
        let content = std::fs::read(&file).with_context(|| {
            format!(
                "reading component {} (run make test-images)",
                file.display()
            )
        })?;
        component_entries.push(Entry::File {
            path: format!("{name}.wasm"),
            mode: 0o755,
            content,
        });
    }
    let mut wasm_entries = vec![Entry::Dir { path: "etc".into() }];
    wasm_entries.extend(model_entries);
    for name in WASM_WORKLOADS {
        let file = wasm_dir.join(format!("{name}.wasm"));
        let content = std::fs::read(&file).with_context(|| {
            format!("reading workload {} (run make test-images)", file.display())
        })?;
        wasm_entries.push(Entry::File {
            path: format!("{name}.wasm"),
            mode: 0o755,
            content,
        });
    }
    wasm_entries.push(Entry::File {
        path: "bad.wasm".into(),
        mode: 0o755,
        content: INVALID_WASM.to_vec(),
    });
    // Not a module: with the image saying wasip1/wasm, running it is a contradiction.
    wasm_entries.push(Entry::File {
        path: "hello.sh".into(),
        mode: 0o755,
        content: b"#!/bin/sh\necho this never runs\n".to_vec(),
    });
    wasm_entries.push(Entry::File {
        path: "etc/motd".into(),
        mode: 0o644,
        content: b"inside the wasm image\n".to_vec(),
    });
    let hello = wasm_entries
        .iter()
        .find(|e| matches!(e, Entry::File { path, .. } if path == "hello.wasm"))
        .cloned()
        .context("hello.wasm missing")?;

    let busybox_bytes = std::fs::read(busybox).with_context(|| {
        format!(
            "reading {} (apt-get install busybox-static)",
            busybox.display()
        )
    })?;
    let mut busybox_entries = vec![
        Entry::Dir { path: "bin".into() },
        Entry::Dir { path: "etc".into() },
        Entry::Dir { path: "tmp".into() },
        Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            content: busybox_bytes,
        },
        Entry::File {
            path: "etc/motd".into(),
            mode: 0o644,
            content: b"inside the busybox image\n".to_vec(),
        },
    ];
    busybox_entries.extend(BUSYBOX_APPLETS.iter().map(|applet| Entry::Symlink {
        path: format!("bin/{applet}"),
        target: "busybox".into(),
    }));

    Ok(vec![
        Image {
            reference: "triage.test/wasm:latest".into(),
            file_stem: "wasm".into(),
            os: "wasip1".into(),
            architecture: "wasm".into(),
            cmd: Some(vec!["/hello.wasm".into()]),
            env: vec![PATH_ENV.into()],
            entries: wasm_entries,
        },
        Image {
            reference: "triage.test/wasm-components:latest".into(),
            file_stem: "wasm-components".into(),
            os: "wasip2".into(),
            architecture: "wasm".into(),
            cmd: Some(vec!["/http-hello.wasm".into()]),
            env: vec![PATH_ENV.into()],
            entries: component_entries,
        },
        Image {
            reference: "triage.test/wasm-noargs:latest".into(),
            file_stem: "wasm-noargs".into(),
            os: "wasip1".into(),
            architecture: "wasm".into(),
            cmd: None,
            env: vec![PATH_ENV.into()],
            entries: vec![hello],
        },
        // The pod sandbox ("pause") image for CRI tests: busybox sleeping forever.
        Image {
            reference: "triage.test/pause:latest".into(),
            file_stem: "pause".into(),
            os: "linux".into(),
            architecture: "amd64".into(),
            cmd: Some(vec!["sleep".into(), "2147483647".into()]),
            env: vec![PATH_ENV.into()],
            entries: busybox_entries.clone(),
        },
        Image {
            reference: "triage.test/busybox:latest".into(),
            file_stem: "busybox".into(),
            os: "linux".into(),
            architecture: "amd64".into(),
            cmd: Some(vec!["sh".into()]),
            env: vec![PATH_ENV.into()],
            entries: busybox_entries,
        },
    ])
}

/// The native hello server (`test-images/native-hello`, built by `make build`) with the
/// shared libraries it links (as `ldd` lists them on this machine), as
/// `triage.test/native-hello:latest`: the baseline `benches/serve.sh` runs in runc.
pub fn native_hello(binary: &Path) -> anyhow::Result<Image> {
    let ldd = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd on {}", binary.display()))?;
    anyhow::ensure!(
        ldd.status.success(),
        "ldd {}: {}",
        binary.display(),
        String::from_utf8_lossy(&ldd.stderr)
    );
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
    let libraries = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter_map(|line| {
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_owned())
        })
        .collect::<Vec<_>>();
    for library in libraries {
        let relative = library.trim_start_matches('/').to_owned();
        let mut parent = Path::new(&relative).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.display().to_string());
            parent = dir.parent();
        }
        let content = std::fs::read(&library).with_context(|| format!("reading {library}"))?;
        entries.push(Entry::File {
            path: relative,
            mode: 0o755,
            content,
        });
    }
    let content = std::fs::read(binary)
        .with_context(|| format!("reading {} (run make build)", binary.display()))?;
    entries.push(Entry::File {
        path: "native-hello".into(),
        mode: 0o755,
        content,
    });
    let mut all: Vec<Entry> = dirs.into_iter().map(|path| Entry::Dir { path }).collect();
    all.extend(entries);
    Ok(Image {
        reference: "triage.test/native-hello:latest".into(),
        file_stem: "native-hello".into(),
        os: "linux".into(),
        architecture: "amd64".into(),
        cmd: Some(vec!["/native-hello".into(), "0.0.0.0:8080".into()]),
        env: vec![PATH_ENV.into()],
        entries: all,
    })
}

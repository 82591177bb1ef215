//! Resolution through the rootfs and the spec's mounts, and refusals of what is not a bounded regular file.

use std::io::Read;
use std::os::unix::fs::symlink;

use serde_json::json;

use super::*;

/// A bundle with `rootfs/`, a bind source `vol/` mounted at `/data`, a `tmpfs` at `/tmp`
/// and `proc` at `/proc`; `node/secret` is a node file outside both.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        for sub in ["bin", "data", "tmp", "proc", "etc"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("bin/app.wasm"), b"image").unwrap();
        // The image's copy under the mount point, which the mount hides.
        std::fs::write(root.join("data/model.onnx"), b"hidden by the mount").unwrap();
        std::fs::write(root.join("tmp/x"), b"hidden by tmpfs").unwrap();
        std::fs::create_dir_all(dir.path().join("vol/sub")).unwrap();
        std::fs::write(dir.path().join("vol/model.onnx"), b"volume").unwrap();
        std::fs::create_dir_all(dir.path().join("node")).unwrap();
        std::fs::write(dir.path().join("node/secret"), b"node secret").unwrap();
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn fs(&self) -> ContainerFs {
        let spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/app.wasm"], "cwd": "/"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/data", "type": "bind",
                 "source": self.dir.path().join("vol"), "options": ["rbind", "ro"]}
            ]
        });
        let bundle =
            Bundle::from_spec("c1", self.dir.path(), serde_json::from_value(spec).unwrap());
        ContainerFs::new(&bundle).unwrap()
    }

    fn read(&self, path: &str) -> Result<String, OpenError> {
        let mut opened = self.fs().open(Path::new(path), None)?;
        let mut text = String::new();
        opened.file.read_to_string(&mut text).unwrap();
        Ok(text)
    }
}

#[test]
fn a_plain_file_is_read_from_the_rootfs() {
    let fx = Fixture::new();
    assert_eq!(fx.read("/bin/app.wasm").unwrap(), "image");
    assert_eq!(
        fx.fs().open(Path::new("/bin/app.wasm"), None).unwrap().size,
        5
    );
}

#[test]
fn a_path_into_a_bind_mount_reads_the_mount_not_the_image_copy_under_it() {
    let fx = Fixture::new();
    assert_eq!(fx.read("/data/model.onnx").unwrap(), "volume");
    // A symlink in the image that leads into the mount gets there too.
    symlink("/data/model.onnx", fx.root().join("bin/model")).unwrap();
    assert_eq!(fx.read("/bin/model").unwrap(), "volume");
    symlink("../data", fx.root().join("bin/up")).unwrap();
    assert_eq!(fx.read("/bin/up/model.onnx").unwrap(), "volume");
}

#[test]
fn neither_symlinks_nor_dotdot_leave_the_container() {
    let fx = Fixture::new();
    let secret = fx.dir.path().join("node/secret");
    symlink(&secret, fx.root().join("bin/abs")).unwrap();
    symlink("../../node/secret", fx.root().join("bin/rel")).unwrap();
    for path in [
        "/bin/abs",
        "/bin/rel",
        "/../node/secret",
        "/../../node/secret",
    ] {
        // (The node's file sits under /tmp, which in the container is its tmpfs.)
        let result = fx.read(path);
        assert!(
            matches!(result, Err(OpenError::NotFound | OpenError::OnMount { .. })),
            "{path} reached the node's file: {result:?}"
        );
    }
    // `..` from a bind mount's root goes to the container's `/`, not to the node
    // directory holding the mount's source.
    std::fs::write(fx.dir.path().join("vol/../node-beside-volume"), b"node").unwrap();
    assert!(matches!(
        fx.read("/data/../node-beside-volume"),
        Err(OpenError::NotFound)
    ));
    symlink("/data/../rootfs/bin/app.wasm", fx.root().join("bin/tricky")).unwrap();
    assert!(matches!(fx.read("/bin/tricky"), Err(OpenError::NotFound)));
}

#[test]
fn symlink_loops_end() {
    let fx = Fixture::new();
    symlink("/bin/b", fx.root().join("bin/a")).unwrap();
    symlink("/bin/a", fx.root().join("bin/b")).unwrap();
    let err = fx.read("/bin/a").unwrap_err().to_string();
    assert!(err.contains("too many levels of symbolic links"), "{err}");
}

#[test]
fn fifos_devices_sockets_and_directories_are_refused_without_opening_them() {
    let fx = Fixture::new();
    let fifo = fx.root().join("bin/fifo");
    nix_mkfifo(&fifo);
    // Opening a FIFO with no writer would block; it is refused at once instead.
    assert!(matches!(
        fx.read("/bin/fifo"),
        Err(OpenError::NotRegular("a FIFO"))
    ));
    symlink("/bin/fifo", fx.root().join("bin/to-fifo")).unwrap();
    assert!(matches!(
        fx.read("/bin/to-fifo"),
        Err(OpenError::NotRegular("a FIFO"))
    ));
    let _listener = std::os::unix::net::UnixListener::bind(fx.root().join("bin/sock")).unwrap();
    assert!(matches!(
        fx.read("/bin/sock"),
        Err(OpenError::NotRegular("a socket"))
    ));
    assert!(matches!(
        fx.read("/bin"),
        Err(OpenError::NotRegular("a directory"))
    ));
    // A host device reached through a symlink is the image's /dev/null, which is absent.
    symlink("/dev/null", fx.root().join("bin/null")).unwrap();
    assert!(matches!(fx.read("/bin/null"), Err(OpenError::NotFound)));
}

#[test]
fn paths_on_other_mounts_are_not_read() {
    let fx = Fixture::new();
    let err = fx.read("/tmp/x").unwrap_err();
    assert!(matches!(err, OpenError::OnMount { ref kind, .. } if kind == "tmpfs"));
    assert_eq!(
        err.to_string(),
        "it lies on the container's tmpfs mount at /tmp, which the node does not read"
    );
    assert!(matches!(
        fx.read("/proc/self/environ"),
        Err(OpenError::OnMount { .. })
    ));
}

#[test]
fn a_mount_destination_that_is_a_symlink_in_the_image_is_where_it_leads() {
    let fx = Fixture::new();
    // libcontainer follows the destination's symlinks inside the rootfs: the volume
    // ends up at /srv/real, and /srv/real/model.onnx is the volume's file.
    std::fs::create_dir_all(fx.root().join("srv/real")).unwrap();
    symlink("/srv/real", fx.root().join("models")).unwrap();
    let spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/x"], "cwd": "/"},
        "mounts": [{"destination": "/models", "type": "bind",
                    "source": fx.dir.path().join("vol"), "options": ["rbind"]}]
    });
    let bundle = Bundle::from_spec("c1", fx.dir.path(), serde_json::from_value(spec).unwrap());
    let fs = ContainerFs::new(&bundle).unwrap();
    let mut text = String::new();
    fs.open(Path::new("/srv/real/model.onnx"), None)
        .unwrap()
        .file
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "volume");
}

#[test]
fn size_bounds_hold_at_open_and_while_reading() {
    let fx = Fixture::new();
    let fs = fx.fs();
    let err = fs
        .open(
            Path::new("/bin/app.wasm"),
            Some((4, "files.max_module_size")),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "5 bytes, larger than the 4 bytes the node profile allows (files.max_module_size)"
    );
    let opened = fs.open(Path::new("/bin/app.wasm"), Some((5, "k"))).unwrap();
    assert_eq!(opened.read_all(5, "k").unwrap(), b"image");
    // It grows after the open: the read stops at the bound.
    std::fs::write(fx.root().join("bin/app.wasm"), b"image grown").unwrap();
    assert!(matches!(
        opened.read_all(5, "k"),
        Err(OpenError::TooLarge { limit: 5, .. })
    ));
}

#[test]
fn a_file_swapped_after_the_open_is_not_what_is_read() {
    let fx = Fixture::new();
    let opened = fx.fs().open(Path::new("/bin/app.wasm"), None).unwrap();
    // The path now names a FIFO; the descriptor still reads the file that was opened.
    std::fs::rename(fx.root().join("bin/app.wasm"), fx.root().join("bin/old")).unwrap();
    nix_mkfifo(&fx.root().join("bin/app.wasm"));
    assert_eq!(opened.read_all(1 << 20, "k").unwrap(), b"image");
}

fn nix_mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

//! End-to-end tests: `ctr` against a private containerd that runs Triage's shim.
//!
//! Each test starts its own containerd (config, root, state and sockets in a temp dir),
//! imports the images `make test-images` built, and stops it again. Tests skip with a
//! printed reason when the host lacks root, containerd or the images — except under
//! `CI=true`, where that is a failure.

mod cdi;
mod cri;
mod errors;
mod hostile;
mod lifecycle;
mod limits;
mod native;
mod nn;
mod serve;
mod support;
mod terminal;
mod wasm;

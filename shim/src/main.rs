//! containerd-shim-triage-v1: containerd's runtime v2 shim for Wasm and native containers.

mod args;
mod bootstrap;
mod cache_cmd;
mod console;
mod events;
mod helper;
mod image;
mod log_relay;
mod logging;
mod options;
mod profile;
mod reaper;
mod task;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(helper::HELPER_ARG) {
        std::process::exit(helper::main());
    }
    if matches!(
        argv.get(1).map(String::as_str),
        Some("-v" | "--version" | "version")
    ) {
        println!("containerd-shim-triage-v1 {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if argv.get(1).map(String::as_str) == Some("cache") {
        if let Err(e) = cache_cmd::main(&argv[2..]) {
            eprintln!("containerd-shim-triage-v1 cache: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let result = args::Flags::parse(&argv[1..]).and_then(|flags| match flags.action.as_str() {
        "start" => bootstrap::start(&flags),
        "delete" => bootstrap::delete(&flags),
        "" => bootstrap::serve(&flags),
        other => Err(anyhow::anyhow!(
            "unknown action {other:?} (expected start or delete)"
        )),
    });
    if let Err(e) = result {
        eprintln!("containerd-shim-triage-v1: {e:#}");
        std::process::exit(1);
    }
}

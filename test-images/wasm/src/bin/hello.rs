//! Prints a greeting, its arguments and the TRIAGE_*/GREETING environment.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    println!("hello from wasm");
    println!("argv0: {}", args[0]);
    println!("args: {}", args[1..].join(" "));
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("TRIAGE_") || k == "GREETING")
        .collect();
    vars.sort();
    for (k, v) in vars {
        println!("env: {k}={v}");
    }
}

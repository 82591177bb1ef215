//! Runs one compute kernel and prints its checksum: `crunch blur SIDE PASSES` or `crunch sort COUNT`.

mod kernels;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u32 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: crunch blur SIDE PASSES | crunch sort COUNT");
            std::process::exit(2)
        })
    };
    let (name, checksum) = match args.first().map(String::as_str) {
        Some("blur") => ("blur", kernels::blur(number(1), number(2))),
        Some("sort") => ("sort", kernels::sort(number(1))),
        _ => {
            eprintln!("usage: crunch blur SIDE PASSES | crunch sort COUNT");
            std::process::exit(2)
        }
    };
    println!("{name} {checksum:016x}");
}

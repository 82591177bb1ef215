//! Shows what the guest can see: the entries of `/`, then each argument read as a file.

fn main() {
    let mut entries: Vec<String> = match std::fs::read_dir("/") {
        Ok(dir) => dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            println!("ls /: error {e}");
            Vec::new()
        }
    };
    entries.sort();
    println!("ls /: {}", entries.join(" "));
    for path in std::env::args().skip(1) {
        match std::fs::read_to_string(&path) {
            Ok(content) => println!("read {path}: ok {}", content.trim_end()),
            Err(e) => println!("read {path}: error {:?}", e.kind()),
        }
    }
    let probe = "/tmp-write-probe";
    match std::fs::write(probe, b"x") {
        Ok(()) => {
            println!("write {probe}: ok");
            let _ = std::fs::remove_file(probe);
        }
        Err(e) => println!("write {probe}: error {:?}", e.kind()),
    }
}

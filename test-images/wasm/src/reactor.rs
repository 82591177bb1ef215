//! A reactor module whose `greet` export is selected with `/reactor.wasm#greet`.

/// Prints a line proving this export, not `_start`, ran.
#[no_mangle]
pub extern "C" fn greet() {
    println!("greet export called");
}

//! A `wasi:cli/command` that serves over `wasi:sockets` itself: binds the address in its
//! first argument, says so, echoes one line back on each of the connections its second
//! argument counts (default 1), then exits 0.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("usage: tcp-echo ADDR [CONNECTIONS]");
    let connections: usize = args.next().map_or(1, |n| n.parse().expect("a count"));
    let listener = match TcpListener::bind(&addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot bind {addr}: {e}");
            std::process::exit(2);
        }
    };
    println!("listening on {}", listener.local_addr().expect("bound"));
    for stream in listener.incoming().take(connections) {
        let mut stream = stream.expect("accept");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("read");
        write!(stream, "echo: {line}").expect("write");
    }
}

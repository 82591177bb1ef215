//! A preview-1 server on WasmEdge's own socket functions (`sock_open`, `sock_bind`, `sock_listen`, `sock_accept`, …, through the `wasmedge_wasi_socket` crate): binds `127.0.0.1:PORT`, prints `listening`, answers one connection's line with `echo: LINE` and exits 0.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: wasmedge-echo PORT");
            std::process::exit(2)
        });
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = wasmedge_wasi_socket::TcpListener::bind(addr, false).unwrap_or_else(|e| {
        eprintln!("wasmedge-echo: cannot listen on {addr}: {e}");
        std::process::exit(1)
    });
    println!("listening");
    let (mut stream, _) = listener.accept(false).unwrap_or_else(|e| {
        eprintln!("wasmedge-echo: accept: {e}");
        std::process::exit(1)
    });
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while let Ok(1) = stream.read(&mut byte) {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let reply = format!("echo: {}\n", String::from_utf8_lossy(&line));
    stream
        .write_all(reply.as_bytes())
        .expect("writing the reply");
    println!("answered");
}

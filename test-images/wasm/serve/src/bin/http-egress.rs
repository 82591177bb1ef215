//! Tries to reach out and answers what happened: `/to/HOST:PORT` an outgoing wasi:http
//! request (`sent: STATUS` or `refused: ERROR`), `/tcp/HOST:PORT` a connection through
//! `std::net` (wasi:sockets; `connected: STATUS LINE` or `refused: ERROR`), `/lookup/NAME`
//! a name lookup (`addresses: A,B` or `refused: ERROR`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme};

struct Egress;

impl wasi::exports::http::incoming_handler::Guest for Egress {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let answer = if let Some(authority) = path.strip_prefix("/to/") {
            http(authority)
        } else if let Some(target) = path.strip_prefix("/tcp/") {
            tcp(target)
        } else if let Some(name) = path.strip_prefix("/lookup/") {
            match (name, 0).to_socket_addrs() {
                Ok(addrs) => {
                    let ips: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
                    format!("addresses: {}\n", ips.join(","))
                }
                Err(e) => format!("refused: {e}\n"),
            }
        } else {
            "paths: /to/HOST:PORT, /tcp/HOST:PORT, /lookup/NAME\n".to_owned()
        };
        serve::respond(out, 200, answer.as_bytes());
    }
}

fn http(authority: &str) -> String {
    let outgoing = OutgoingRequest::new(Fields::new());
    let _ = outgoing.set_scheme(Some(&Scheme::Http));
    let _ = outgoing.set_authority(Some(authority));
    let _ = outgoing.set_path_with_query(Some("/from-egress"));
    match outgoing_handler::handle(outgoing, None) {
        Err(e) => format!("refused: {e:?}\n"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("sent: {}\n", response.status()),
                Some(Ok(Err(e))) => format!("refused: {e:?}\n"),
                other => format!("refused: {other:?}\n"),
            }
        }
    }
}

fn tcp(target: &str) -> String {
    let mut stream = match TcpStream::connect(target) {
        Ok(stream) => stream,
        Err(e) => return format!("refused: {e}\n"),
    };
    let asked = stream.write_all(b"GET /from-tcp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    match asked.and_then(|()| stream.read_to_string(&mut answer)) {
        Ok(_) => format!("connected: {}\n", answer.lines().next().unwrap_or_default()),
        Err(e) => format!("connected, then: {e}\n"),
    }
}

wasi::http::proxy::export!(Egress with_types_in wasi);

fn main() {}

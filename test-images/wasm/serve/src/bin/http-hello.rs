//! Answers every request with a greeting, the method and the path (the hello handler of
//! the benchmarks); `/env` answers the guest's environment, `/trap` traps, `/body` reads the
//! whole request body first and answers its length, `/spin` never answers (it loops).

use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let method = match request.method() {
            Method::Get => "GET".to_owned(),
            Method::Post => "POST".to_owned(),
            other => format!("{other:?}"),
        };
        match path.as_str() {
            "/env" => {
                let mut vars: Vec<String> =
                    std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                vars.sort();
                serve::respond(out, 200, format!("{}\n", vars.join("\n")).as_bytes());
            }
            "/trap" => panic!("asked to trap"),
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/body" => {
                let body = request.consume().expect("a request has a body once");
                let stream = body.stream().expect("a body has a stream once");
                let mut length = 0;
                // Until the client has sent it all (or gone).
                while let Ok(chunk) = stream.blocking_read(65536) {
                    length += chunk.len();
                }
                serve::respond(out, 200, format!("read {length} bytes\n").as_bytes());
            }
            _ => serve::respond(
                out,
                200,
                format!("hello from wasm over http: {method} {path}\n").as_bytes(),
            ),
        }
    }
}

wasi::http::proxy::export!(Hello with_types_in wasi);

fn main() {}

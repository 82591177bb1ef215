//! Answers every request with a greeting, the method and the path (the hello handler of
//! the benchmarks); `/env` answers the guest's environment, `/exit` traps.

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

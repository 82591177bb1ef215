//! Tries an outgoing wasi:http request to the authority in its path (`/to/HOST:PORT`) and
//! answers what happened: `sent: STATUS` or `refused: ERROR`.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme};

struct Egress;

impl wasi::exports::http::incoming_handler::Guest for Egress {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let authority = path.trim_start_matches("/to/").to_owned();
        let outgoing = OutgoingRequest::new(Fields::new());
        let _ = outgoing.set_scheme(Some(&Scheme::Http));
        let _ = outgoing.set_authority(Some(&authority));
        let _ = outgoing.set_path_with_query(Some("/"));
        let answer = match outgoing_handler::handle(outgoing, None) {
            Err(e) => format!("refused: {e:?}\n"),
            Ok(future) => {
                future.subscribe().block();
                match future.get() {
                    Some(Ok(Ok(response))) => format!("sent: {}\n", response.status()),
                    Some(Ok(Err(e))) => format!("refused: {e:?}\n"),
                    other => format!("refused: {other:?}\n"),
                }
            }
        };
        serve::respond(out, 200, answer.as_bytes());
    }
}

wasi::http::proxy::export!(Egress with_types_in wasi);

fn main() {}

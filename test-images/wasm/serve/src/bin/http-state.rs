//! Keeps what a request sent in the instance's memory and answers with what was there
//! before: with a fresh instance per request, no request ever sees another's data.

use std::sync::Mutex;

use wasi::http::types::{IncomingRequest, ResponseOutparam};

static LAST_PATIENT: Mutex<String> = Mutex::new(String::new());

struct State;

impl wasi::exports::http::incoming_handler::Guest for State {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let patient = path.trim_start_matches("/patient/").to_owned();
        let before = std::mem::replace(&mut *LAST_PATIENT.lock().unwrap(), patient);
        let seen = if before.is_empty() {
            "nothing"
        } else {
            before.as_str()
        };
        serve::respond(out, 200, format!("seen before: {seen}\n").as_bytes());
    }
}

wasi::http::proxy::export!(State with_types_in wasi);

fn main() {}

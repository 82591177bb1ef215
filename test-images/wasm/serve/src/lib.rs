//! What the test services share: reading a request's body, answering with a status and a body.

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Sets `out` to a response with `status` and `body` (text/plain).
pub fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append(&"content-type".to_string(), &b"text/plain".to_vec());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("a new body has a stream");
    // The stream takes at most 4096 bytes per write.
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("writing the body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finishing the body");
}

/// The whole body of `request`, refused once it passes `limit` bytes.
pub fn read_body(request: &IncomingRequest, limit: usize) -> Result<Vec<u8>, String> {
    let body = request
        .consume()
        .map_err(|()| "the body was already read".to_owned())?;
    let stream = body
        .stream()
        .map_err(|()| "the body has no stream".to_owned())?;
    let mut bytes = Vec::new();
    // Until the client has sent it all (or gone).
    while let Ok(chunk) = stream.blocking_read(65536) {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            return Err(format!("the body is larger than {limit} bytes"));
        }
    }
    Ok(bytes)
}

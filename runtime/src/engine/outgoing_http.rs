//! A guest's outgoing `wasi:http` requests: sent only to granted destinations, over a connection the host opens to an address it checked; the rest refused and logged once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::egress::Egress;

/// How long connecting may take unless the guest's request options say otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the response's head may take unless the guest's request options say otherwise.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// The `wasi:http` hooks of one instance of container `id`.
pub(super) struct OutgoingHttp {
    egress: Arc<Egress>,
}

impl OutgoingHttp {
    /// Requests go where `egress` allows.
    pub(super) fn new(egress: Arc<Egress>) -> Self {
        Self { egress }
    }
}

type Sent = Result<
    (
        hyper::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let egress = Arc::clone(&self.egress);
        Box::new(send(egress, request, options))
    }
}

async fn send(
    egress: Arc<Egress>,
    mut request: hyper::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Sent {
    let uri = request.uri().clone();
    let Some(authority) = uri.authority() else {
        return Err(Error::HttpRequestUriInvalid);
    };
    let https = uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS);
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let destination = format!("{}:{port}", authority.host());
    let Some(addrs) = egress.destinations(authority.host(), port) else {
        egress.refused("outgoing wasi:http request to", &destination);
        return Err(Error::HttpRequestDenied);
    };
    if https {
        // Granted, but this shim carries no TLS client (and no web roots): say so once.
        egress.refused(
            "outgoing https request (this shim has no TLS client for wasi:http; a guest may use its own TLS over wasi:sockets) to",
            &destination,
        );
        return Err(Error::HttpRequestDenied);
    }
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(FIRST_BYTE_TIMEOUT);
    let stream = connect(&addrs, connect_timeout).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)?
    .map_err(Error::from)?;
    let driven = tokio::spawn(connection);
    // The request line carries the path only: the authority goes in `Host`.
    *request.uri_mut() = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)?;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let finished: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        match driven.await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, finished))
}

/// A connection to the first of `addrs` that answers within `timeout`.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<tokio::net::TcpStream, Error> {
    let mut last = Error::ConnectionTimeout;
    for addr in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

//! A small native HTTP server, the counterpart of the Wasm hello service in `benches/serve.sh`: HTTP/1.1 and h2c, `TCP_NODELAY`, a greeting with the method and path for every request.
//!
//! Usage: `triage-native-hello IP:PORT [WORKERS]` (workers: the machine's CPUs by default).

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: triage-native-hello IP:PORT [WORKERS]");
        std::process::exit(2);
    };
    let workers = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(serve(&addr)) {
        eprintln!("triage-native-hello: {addr}: {e}");
        std::process::exit(1);
    }
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| async move {
                Ok::<_, Infallible>(greet(&request))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn greet(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    Response::new(Full::new(Bytes::from(format!(
        "hello from native over http: {} {path}\n",
        request.method()
    ))))
}

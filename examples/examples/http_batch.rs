//! Batching to an HTTP endpoint: `POST /api/events`, the form newer dashboards accept, with
//! hyper, against a small local server the example starts.
//!
//! ```sh
//! cargo run -p sluice-examples --example http_batch
//! ```
//!
//! `Batch` → `CircuitBreaker` → `Pool` → an HTTP/1.1 connection that posts each event of a
//! batch in order; the server answers 204 and counts.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sluice_batch::{Batch, BatchLayer};
use sluice_breaker::CircuitBreakerLayer;
use sluice_pool::PoolLayer;
use tokio::net::{TcpListener, TcpStream};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// The dashboard's HTTP endpoint: counts `POST /api/events`, answers 204.
async fn server(listener: TcpListener, received: Arc<AtomicUsize>) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let received = Arc::clone(&received);
                    async move {
                        let ok = request.method() == hyper::Method::POST
                            && request.uri().path() == "/api/events";
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let status = if ok && event["event"] == "claude_event" {
                            received.fetch_add(1, Ordering::SeqCst);
                            StatusCode::NO_CONTENT
                        } else {
                            StatusCode::BAD_REQUEST
                        };
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One HTTP/1.1 connection, a `Service<Batch<Value>>`: posts each event in order.
struct HttpConnection {
    // HTTP/1.1 carries one request at a time: the batch's posts take turns.
    sender: Arc<tokio::sync::Mutex<SendRequest<Full<Bytes>>>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Service<Batch<Value>> for HttpConnection {
    type Response = ();
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        // A closed connection fails here, and the pool replaces it.
        if self.closed.load(Ordering::SeqCst) {
            return std::task::Poll::Ready(Err("connection closed".into()));
        }
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch<Value>) -> Self::Future {
        let sender = Arc::clone(&self.sender);
        let closed = Arc::clone(&self.closed);
        Box::pin(async move {
            let mut sender = sender.lock().await;
            for payload in batch {
                let body = json!({"namespace": "", "event": "claude_event", "data": payload,
                                  "timestamp": payload["timestamp"], "source": "hook"});
                let request = Request::post("/api/events")
                    .header("content-type", "application/json")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::from(body.to_string())))?;
                let sent = async {
                    sender.ready().await?;
                    sender.send_request(request).await
                };
                let response = match sent.await {
                    Ok(response) => response,
                    Err(error) => {
                        closed.store(true, Ordering::SeqCst);
                        return Err(error.into());
                    }
                };
                if response.status() != StatusCode::NO_CONTENT {
                    return Err(format!("server answered {}", response.status()).into());
                }
            }
            Ok(())
        })
    }
}

async fn connect(addr: SocketAddr) -> Result<HttpConnection, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(HttpConnection {
        sender: Arc::new(tokio::sync::Mutex::new(sender)),
        closed: Arc::default(),
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicUsize::new(0));
    tokio::spawn(server(listener, Arc::clone(&received)));

    let mut events = ServiceBuilder::new()
        .layer(
            BatchLayer::builder()
                .max_items(10)
                .max_wait(Duration::from_millis(50))
                .build()?,
        )
        .layer(CircuitBreakerLayer::new())
        .layer(PoolLayer::builder(addr).max_size(2).build()?)
        .service(service_fn(connect));
    let handle = events.handle();

    for n in 0..42 {
        let event = json!({"event": "claude_event", "type": "hook", "subtype": "pre_tool",
                           "timestamp": "2026-11-28T05:06:26.758504+00:00",
                           "data": {"tool_name": "Bash", "n": n}});
        // Fire and forget: the event is delivered with its batch.
        drop(events.ready().await?.call(event));
    }
    handle.shutdown(None).await?;
    let stats = handle.stats();
    println!(
        "posted {} events to http://{addr}/api/events in {} batches; the server counted {}",
        stats.sent,
        stats.batches.total(),
        received.load(Ordering::SeqCst)
    );
    assert_eq!(received.load(Ordering::SeqCst), 42);
    Ok(())
}

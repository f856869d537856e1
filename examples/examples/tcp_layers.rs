//! The three layers over a plain TCP line protocol, composed with `ServiceBuilder`: nothing
//! here knows Socket.IO.
//!
//! ```sh
//! cargo run -p sluice-examples --example tcp_layers
//! ```
//!
//! A local server acknowledges each line with `ok`. Events go through
//! `Batch` (10 per batch, 20 ms) → `CircuitBreaker` → `Pool` (2 connections) → a TCP
//! connection that writes a batch's lines and reads one `ok` per line.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_batch::{Batch, BatchLayer};
use sluice_breaker::CircuitBreakerLayer;
use sluice_pool::PoolLayer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// One TCP connection: writes a batch of lines, then reads an acknowledgement per line.
#[derive(Clone)]
struct LineConnection {
    stream: Arc<Mutex<BufReader<TcpStream>>>,
}

impl Service<Batch<String>> for LineConnection {
    type Response = usize;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch<String>) -> Self::Future {
        let stream = Arc::clone(&self.stream);
        Box::pin(async move {
            let mut stream = stream.lock().await;
            let lines = batch.into_items();
            let mut out = String::new();
            for line in &lines {
                out.push_str(line);
                out.push('\n');
            }
            stream.get_mut().write_all(out.as_bytes()).await?;
            for _ in &lines {
                let mut ack = String::new();
                if stream.read_line(&mut ack).await? == 0 || ack.trim() != "ok" {
                    return Err("connection closed".into());
                }
            }
            Ok(lines.len())
        })
    }
}

async fn server(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_line)) = lines.next_line().await {
                if write.write_all(b"ok\n").await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server(listener));

    let connector = service_fn(|addr: SocketAddr| async move {
        let stream = TcpStream::connect(addr).await?;
        Ok::<_, BoxError>(LineConnection {
            stream: Arc::new(Mutex::new(BufReader::new(stream))),
        })
    });
    let mut events = ServiceBuilder::new()
        .layer(
            BatchLayer::builder()
                .max_items(10)
                .max_wait(Duration::from_millis(20))
                .build()?,
        )
        .layer(
            CircuitBreakerLayer::builder()
                .consecutive_failures(3)
                .build()?,
        )
        .layer(PoolLayer::builder(addr).max_size(2).build()?)
        .service(connector);
    let handle = events.handle();

    let mut responses = Vec::new();
    for n in 0..95 {
        responses.push(events.ready().await?.call(format!("event {n}")));
    }
    for response in responses {
        response.await?;
    }
    handle.shutdown(None).await?;
    let stats = handle.stats();
    println!(
        "{} events sent over TCP in {} batches ({} full, {} on time, {} at shutdown)",
        stats.sent,
        stats.batches.total(),
        stats.batches.size,
        stats.batches.time,
        stats.batches.shutdown
    );
    assert_eq!(stats.sent, 95);
    Ok(())
}

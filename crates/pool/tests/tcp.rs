//! Real TCP: a line-echo server on 127.0.0.1 is stopped and restarted on the same port in the
//! middle of a run; the pool recovers on its own.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_pool::PoolLayer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

/// Echoes every line back until dropped.
async fn echo_server(listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connections.spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// One TCP connection: one request at a time, broken after any I/O error.
#[derive(Clone)]
struct LineConn {
    stream: Arc<tokio::sync::Mutex<BufReader<TcpStream>>>,
    broken: Arc<AtomicBool>,
}

impl Service<String> for LineConn {
    type Response = String;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.broken.load(Ordering::Acquire) {
            Poll::Ready(Err("connection broken".into()))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, line: String) -> Self::Future {
        let stream = Arc::clone(&self.stream);
        let broken = Arc::clone(&self.broken);
        Box::pin(async move {
            let mut stream = stream.lock().await;
            let result = async {
                stream
                    .get_mut()
                    .write_all(format!("{line}\n").as_bytes())
                    .await?;
                let mut answer = String::new();
                if stream.read_line(&mut answer).await? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                Ok(answer.trim_end().to_string())
            }
            .await;
            result.map_err(|error| {
                broken.store(true, Ordering::Release);
                error.into()
            })
        })
    }
}

async fn connect(addr: SocketAddr) -> Result<LineConn, std::io::Error> {
    let stream = TcpStream::connect(addr).await?;
    Ok(LineConn {
        stream: Arc::new(tokio::sync::Mutex::new(BufReader::new(stream))),
        broken: Arc::default(),
    })
}

#[tokio::test]
async fn the_pool_recovers_when_the_server_comes_back_on_the_same_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(echo_server(listener));

    let pool = PoolLayer::builder(addr)
        .max_size(3)
        .connect_timeout(Duration::from_secs(1))
        .wait_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap()
        .layer(service_fn(connect));
    let handle = pool.handle();

    let send = |n: u32| {
        let pool = pool.clone();
        async move { pool.oneshot(format!("line {n}")).await }
    };
    for n in 0..50 {
        assert_eq!(send(n).await.unwrap(), format!("line {n}"));
    }
    assert_eq!(handle.stats().created, 1, "one connection carried them all");

    // Stop the server: its listener and every connection close.
    server.abort();
    let _ = server.await;
    let mut failures = 0;
    for n in 0..5 {
        if send(n).await.is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 5, "nothing gets through while the server is down");

    // Bring it back on the same port; the pool reconnects by itself, no restart.
    let listener = TcpListener::bind(addr).await.unwrap();
    let server = tokio::spawn(echo_server(listener));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match timeout(Duration::from_secs(2), send(1_000)).await {
            Ok(Ok(answer)) => {
                assert_eq!(answer, "line 1000");
                break;
            }
            _ => assert!(Instant::now() < deadline, "the pool never recovered"),
        }
        // The next attempt waits out the pool's reconnect backoff (at most 50 ms).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..50 {
        assert_eq!(send(n).await.unwrap(), format!("line {n}"));
    }
    let stats = handle.stats();
    assert!(stats.created >= 2, "{stats:?}");
    assert!(stats.evicted.broken >= 1, "{stats:?}");
    assert!(stats.live <= 3);
    server.abort();
}

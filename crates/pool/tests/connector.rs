//! The connectors the pool accepts, checked by the compiler where it is strictest: a
//! `service_fn` connector whose errors are `BoxError`, the pool used inside `tokio::spawn`
//! (the future must be proven `Send` for every lifetime). An earlier way of naming the
//! connector bounds failed to compile here with rustc's higher-ranked "implementation of
//! `From` is not general enough".
//!
//! The target is owned (`String`). A borrowed one (`&'static str`) does not compile inside
//! `tokio::spawn` today, whatever the bounds: rustc erases its lifetime in the task's future
//! and cannot prove the connector's `Service` impl for every lifetime ("implementation of
//! `FnOnce` is not general enough"), because `Pool`'s fields name `M::Response`.

use std::time::Duration;

use sluice_pool::{Pool, PoolLayer};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_fn_connector_with_box_errors_serves_from_spawned_tasks() {
    let connector = service_fn(|addr: String| async move {
        Ok::<_, BoxError>(service_fn(move |request: u32| {
            let addr = addr.clone();
            async move { Ok::<_, BoxError>(format!("{addr} answered {request}")) }
        }))
    });
    let pool = ServiceBuilder::new()
        .layer(
            PoolLayer::builder("db:5432".to_string())
                .max_size(2)
                .min_idle(1)
                .idle_timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .service(connector);
    let handle = pool.handle();

    let mut tasks = tokio::task::JoinSet::new();
    for request in 0..8u32 {
        let mut pool = pool.clone();
        tasks.spawn(async move {
            let answer = pool.ready().await?.call(request).await?;
            Ok::<_, BoxError>((request, answer))
        });
    }
    let mut answered = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (request, answer) = done.unwrap().unwrap();
        assert_eq!(answer, format!("db:5432 answered {request}"));
        answered.push(request);
    }
    answered.sort_unstable();
    assert_eq!(answered, (0..8).collect::<Vec<_>>());

    // The pool itself moved into a task, and closed from another.
    let served = tokio::spawn(async move {
        let mut pool = pool;
        pool.ready().await?.call(8).await
    });
    assert_eq!(served.await.unwrap().unwrap(), "db:5432 answered 8");
    tokio::spawn(async move { handle.close().await })
        .await
        .unwrap();
}

/// The same, generic over the connector, as a library wrapping the pool would write it.
fn spawn_request<M>(
    mut pool: Pool<M, String>,
    request: u32,
) -> tokio::task::JoinHandle<Result<String, BoxError>>
where
    M: Service<String, Error = BoxError> + Send + 'static,
    M::Future: Send + 'static,
    M::Response: Service<u32, Response = String, Error = BoxError> + Send + 'static,
    <M::Response as Service<u32>>::Future: Send,
{
    tokio::spawn(async move { pool.ready().await?.call(request).await })
}

#[tokio::test]
async fn a_pool_generic_over_its_connector_serves_from_a_spawned_task() {
    let connector = service_fn(|addr: String| async move {
        Ok::<_, BoxError>(service_fn(move |request: u32| {
            let addr = addr.clone();
            async move { Ok::<_, BoxError>(format!("{addr} answered {request}")) }
        }))
    });
    let pool = PoolLayer::new("db:5432".to_string()).layer(connector);
    let answer = spawn_request(pool, 1).await.unwrap().unwrap();
    assert_eq!(answer, "db:5432 answered 1");
}

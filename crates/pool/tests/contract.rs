//! The pool holds its connections to the tower contract.

use sluice_pool::PoolLayer;
use sluice_test_support::ContractProbe;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

#[tokio::test]
async fn connections_are_readied_before_every_call() {
    let probe = ContractProbe::new();
    let connections = probe.clone();
    let connector = service_fn(move |_: ()| {
        // Each connection is a fresh clone: it starts unready.
        let connection = connections.clone();
        async move { Ok::<_, BoxError>(connection) }
    });
    let pool = PoolLayer::builder(())
        .max_size(3)
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();
    let tasks: Vec<_> = (0..20u32)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut pool = pool;
                ServiceExt::<u32>::ready(&mut pool)
                    .await
                    .unwrap()
                    .call(i)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), i as u32);
    }
    assert_eq!(probe.calls(), 20);
    assert!(handle.stats().created <= 3);
}

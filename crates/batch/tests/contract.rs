//! The batcher holds its inner service to the tower contract.

use sluice_batch::{Batch, BatchLayer};
use sluice_test_support::ContractProbe;
use tower::{Service, ServiceExt};

#[tokio::test]
async fn the_worker_readies_the_inner_service_before_every_call() {
    let probe = ContractProbe::new();
    let batcher = BatchLayer::builder()
        .max_items(3)
        .build()
        .unwrap()
        .spawn(probe.clone());
    let handle = batcher.handle();
    for i in 0..10u32 {
        // Each clone starts without a reserved slot and must be readied on its own.
        let mut clone = batcher.clone();
        ServiceExt::<u32>::ready(&mut clone).await.unwrap();
        drop(clone.call(i));
    }
    drop(batcher);
    handle.shutdown(None).await.unwrap();
    assert_eq!(probe.calls(), 4); // 3 + 3 + 3 + 1
    assert_eq!(handle.stats().sent, 10);
    let _: Option<Batch<u32>> = None;
}

//! The cost of a core hop: a request and its reply over the glommio channel mesh between two
//! shards (the produce path's hop when a connection lands on a shard that does not own the
//! partition). Latency: one request in flight at a time; throughput: 64 in flight.
//!
//! Run: `cargo bench --bench mesh`. Prints sentences such as
//! "mesh round trip, 1 in flight, cores 0→1: 48.1 µs".

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::join_all;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use ringmq::shard::mesh::{serve_mesh, MeshMessage, MeshRouter, MESH_CHANNEL_CAPACITY};
use ringmq::shard::ops::{ShardOp, ShardReply};
use ringmq::shard::placement::ShardId;

/// Runs `rounds` rounds of `in_flight` concurrent calls from shard 0 to shard 1; returns the
/// time shard 0 spent on them.
fn run_calls(rounds: u64, in_flight: usize, cpus: (usize, usize)) -> Duration {
    let mesh = MeshBuilder::<MeshMessage, _>::full(2, MESH_CHANNEL_CAPACITY);
    let placement = |cpu: usize| if cpu < available_cpus() { Placement::Fixed(cpu) } else { Placement::Unbound };
    let server_mesh = mesh.clone();
    let server = LocalExecutorBuilder::new(placement(cpus.1))
        .spawn(move || async move {
            let (senders, receivers) = server_mesh.join().await.expect("joining the mesh");
            let router = MeshRouter::new(senders);
            serve_mesh(router, receivers, |_op| async { ShardReply::Done }).await;
        })
        .expect("starting the serving executor");
    let client = LocalExecutorBuilder::new(placement(cpus.0))
        .spawn(move || async move {
            let (senders, receivers) = mesh.join().await.expect("joining the mesh");
            let router = MeshRouter::new(senders);
            // Peers are numbered in the order they joined the mesh.
            let server_id = ShardId(1 - router.shard_id().0);
            let replies = glommio::spawn_local(serve_mesh(router.clone(), receivers, |_op| async { ShardReply::Done }));
            let started = Instant::now();
            for _ in 0..rounds {
                let calls = (0..in_flight).map(|_| router.call(server_id, ShardOp::CancelFetch { fetch_id: 0 }));
                for reply in join_all(calls).await {
                    assert!(matches!(reply, ShardReply::Done));
                }
            }
            let elapsed = started.elapsed();
            router.close();
            drop(replies);
            elapsed
        })
        .expect("starting the calling executor");
    let elapsed = client.join().expect("the calling executor");
    server.join().expect("the serving executor");
    elapsed
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn mesh_hop(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh");
    group.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for (name, cpus) in [("cores 0→1", (0, 1)), ("same core 0→0", (0, 0))] {
        group.bench_function(format!("round_trip_1_in_flight/{name}"), |b| {
            b.iter_custom(|iters| run_calls(iters.max(1), 1, cpus));
        });
        let median = (0..3).map(|_| run_calls(2000, 1, cpus) / 2000).min().unwrap_or_default();
        println!("mesh round trip, 1 in flight, {name}: {:.1} µs", median.as_secs_f64() * 1e6);
        let rounds = 500;
        let elapsed = run_calls(rounds, 64, cpus);
        println!(
            "mesh throughput, 64 in flight, {name}: {:.0} requests/s",
            (rounds * 64) as f64 / elapsed.as_secs_f64()
        );
    }
    group.finish();
}

criterion_group!(benches, mesh_hop);
criterion_main!(benches);

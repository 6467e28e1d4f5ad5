//! Heap held by a router for 100 remote nodes (topology, placement, breakers
//! and pool), counted by a wrapping global allocator (`stats_alloc`; the
//! crate forbids `unsafe`, so the `GlobalAlloc` impl comes from there).
//!
//! Run: `cargo run --release -p mnemo-router --example memory`.
//!
//! Last run: 112 KiB at rest (~1.1 KiB a node: member, placement key,
//! breaker, parsed endpoint, 4 empty channel slots), within the 200 KB goal.
//! Each opened tonic channel adds ~11 KiB (its buffer worker and queue), so
//! all 400 channels open take ~4.4 MiB; that is tonic's, and is why slots
//! open only on first use.

use std::alloc::System;

use mnemo_router::{Member, NodeId, Router, RouterConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const REMOTES: usize = 100;

fn net(region: &Region<'_, System>) -> isize {
    let c = region.change();
    c.bytes_allocated as isize - c.bytes_deallocated as isize
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let members: Vec<Member> = (0..=REMOTES)
        .map(|i| {
            Member::alive(
                format!("node-{i:04}"),
                format!("10.0.{}.{}:7000", i / 250, i % 250),
            )
        })
        .collect();

    let region = Region::new(GLOBAL);
    let router = Router::new(
        NodeId::from("node-0000"),
        members.clone(),
        RouterConfig::default(),
    );
    let at_rest = net(&region);

    // Open (lazily) every channel of every node, as steady traffic would.
    let table = router.table();
    for (_, remote) in table.remotes() {
        let channels = remote.channels.as_ref().expect("valid address");
        for _ in 0..channels.capacity() {
            let _ = channels.get();
        }
    }
    drop(table);
    let with_channels = net(&region);

    // A membership update keeps breakers and channels.
    router.update_topology(members, 1);
    let after_update = net(&region);

    let kib = |b: isize| b as f64 / 1024.0;
    println!("remote nodes: {REMOTES}");
    println!(
        "router at rest (topology + breakers + endpoints): {:.1} KiB ({:.0} B/node)",
        kib(at_rest),
        at_rest as f64 / REMOTES as f64
    );
    println!(
        "with all {} channels opened: {:.1} KiB ({:.0} B/node)",
        REMOTES * 4,
        kib(with_channels),
        with_channels as f64 / REMOTES as f64
    );
    println!("after a topology update: {:.1} KiB", kib(after_update));
    drop(router);
}

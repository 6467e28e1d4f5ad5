//! Measures how long a three-node loopback cluster takes to declare a
//! killed member down with the default SWIM timing, over a few rounds of
//! kill and restart.
//!
//! `cargo run -p mnemo-cluster --example detect_down`

use std::time::{Duration, Instant};

use mnemo_cluster::{MemberState, Membership, MembershipConfig};

const GUARD: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let any = "127.0.0.1:0".parse()?;
    let n1 = Membership::start(MembershipConfig::new("n1", any)).await?;
    let seed = n1.local_addr().to_string();
    let _n2 =
        Membership::start(MembershipConfig::new("n2", any).with_seeds([seed.clone()])).await?;
    let mut rx = n1.subscribe();
    let mut samples = Vec::new();

    for round in 1..=5 {
        let n3 =
            Membership::start(MembershipConfig::new("n3", any).with_seeds([seed.clone()])).await?;
        tokio::time::timeout(GUARD, rx.wait_for(|v| v.count(MemberState::Alive) == 3)).await??;
        let killed_at = Instant::now();
        n3.abort().await;
        tokio::time::timeout(
            GUARD,
            rx.wait_for(|v| v.get("n3").is_some_and(|m| m.state == MemberState::Down)),
        )
        .await??;
        let took = killed_at.elapsed();
        println!("round {round}: killed n3 declared down by n1 after {took:?}");
        samples.push(took);
    }
    samples.sort();
    println!(
        "min {:?}, median {:?}, max {:?}",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    Ok(())
}

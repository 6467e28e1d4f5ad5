//! `mnemo dev`, the README's first command: three real node processes that
//! form one cluster, answer through any node, and stop together on Ctrl-C.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A port P such that P, P+1 and P+2 are free for TCP and UDP right now.
fn three_free_ports() -> u16 {
    for _ in 0..50 {
        let base = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65_000 {
            continue;
        }
        let free = (0..3).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + i)).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no three consecutive free ports");
}

#[test]
fn dev_starts_a_cluster_and_ctrl_c_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = three_free_ports();
    let mut dev = support::mnemo()
        .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Guard against hanging only: dev prints this once the cluster formed.
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("mnemo dev announces the cluster");
        if line.contains("Ctrl-C stops every node") {
            break;
        }
    }

    // dev makes its certificates under the data directory; clients use them.
    let certs = dir.path().join("certs");
    let node = |i: u16| format!("127.0.0.1:{}", base + i);
    let out = support::mnemo_with_certs(&certs)
        .args(["status", "--json", "--node", &node(1)])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["partition"], "connected");
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m["state"] == "alive"), "{members:?}");

    let out = support::mnemo_with_certs(&certs)
        .args([
            "remember",
            "--space",
            "tour",
            "--id",
            "t1",
            "--node",
            &node(2),
        ])
        .arg("the tour starts here")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = support::mnemo_with_certs(&certs)
        .args([
            "recall",
            "--space",
            "tour",
            "--json",
            "--node",
            &node(0),
            "tour",
        ])
        .output()
        .unwrap();
    let recalled: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(recalled["memories"][0]["id"], "t1");

    // Ctrl-C reaches mnemo dev; it stops every node and exits cleanly.
    let interrupted = Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let exit = dev.wait().unwrap();
    assert!(exit.success(), "mnemo dev exited with {exit}");
    for i in 0..3 {
        let out = support::mnemo_with_certs(&certs)
            .args(["status", "--node", &node(i), "--timeout", "1000"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "node {} still answers", node(i));
    }
}

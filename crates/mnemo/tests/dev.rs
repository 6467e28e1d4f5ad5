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

/// `mnemo dev` with its output lines on a channel (stdout and stderr
/// merged), waiting for the cluster to form.
fn start_dev(
    dir: &std::path::Path,
    base: u16,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut dev = support::mnemo()
        .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(dev.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(dev.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[dev] {line}");
                let _ = tx.send(line);
            }
        });
    }
    (dev, rx)
}

/// Waits for a line containing `text`; the timeout only guards a hang.
fn await_line(rx: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("mnemo dev never said {text:?}"));
        if line.contains(text) {
            return line;
        }
    }
}

fn pid_of_node(id: &str, base: u16, i: u16) -> Option<String> {
    let out = Command::new("pgrep")
        .args([
            "-f",
            "--",
            &format!("--id {id} --listen 127.0.0.1:{}", base + i),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .map(str::to_owned)
}

/// A node that dies is reported and started again while the others keep
/// serving; killing `mnemo dev` outright takes its nodes with it.
#[test]
fn dev_restarts_a_dead_node_and_its_nodes_die_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = three_free_ports();
    let (mut dev, rx) = start_dev(dir.path(), base);
    await_line(&rx, "Ctrl-C stops every node");
    let certs = dir.path().join("certs");
    let node = |i: u16| format!("127.0.0.1:{}", base + i);

    let n3 = pid_of_node("n3", base, 2).expect("n3 runs");
    assert!(
        Command::new("kill")
            .args(["-9", &n3])
            .status()
            .unwrap()
            .success()
    );
    await_line(&rx, "node n3 exited");
    // The others keep serving meanwhile.
    let out = support::mnemo_with_certs(&certs)
        .args([
            "remember",
            "--space",
            "s",
            "--node",
            &node(0),
            "while n3 is down",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    await_line(&rx, "starting node n3 again");
    await_line(&rx, "n3 serving on");

    // SIGKILL: no chance to stop anything; the nodes notice by themselves.
    dev.kill().unwrap();
    dev.wait().unwrap();
    for (i, id) in ["n1", "n2", "n3"].iter().enumerate() {
        let i = u16::try_from(i).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pid_of_node(id, base, i).is_some_and(|pid| {
            // A zombie has ended; only its parent (gone) would reap it.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "{id} outlived mnemo dev"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A node that cannot start stops the start-up at once, with its reason.
#[test]
fn dev_fails_fast_when_a_node_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = three_free_ports();
    let _taken = TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let out = support::mnemo()
        .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node n2 could not start") && stderr.contains("Address already in use"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Ctrl-C stops every node"));
    // And it left nothing behind.
    for (i, id) in ["n1", "n3"].iter().enumerate() {
        let i = u16::try_from(i * 2).unwrap();
        assert!(pid_of_node(id, base, i).is_none(), "{id} still runs");
    }
}

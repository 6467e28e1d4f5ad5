//! Real `mnemo node` processes for integration tests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mnemo_proto::v1::mnemo_client::MnemoClient;
use tonic::transport::Channel;

/// The `mnemo` binary under test.
pub fn mnemo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mnemo"))
}

/// A running node process; killed when dropped.
pub struct NodeProcess {
    pub id: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl NodeProcess {
    /// Starts `mnemo node` with `extra` flags and waits until it serves.
    pub fn start(id: &str, dir: &Path, listen: &str, extra: &[&str]) -> NodeProcess {
        let mut child = mnemo()
            .args(["node", "--id", id, "--listen", listen])
            .arg("--data-dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mnemo node");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the node never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node] {line}");
                if let Some(rest) = line.split(" serving on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>().ok());
                }
            }
        });
        // The timeout only guards against a node that never starts.
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("node {id} did not report its address"));
        NodeProcess {
            id: id.into(),
            addr,
            dir: dir.into(),
            child,
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn node_flag(&self) -> String {
        self.addr.to_string()
    }

    pub async fn client(&self) -> MnemoClient<Channel> {
        MnemoClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// Runs a client command against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        mnemo()
            .args(args)
            .args(["--node", &self.node_flag()])
            .output()
            .expect("run mnemo")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

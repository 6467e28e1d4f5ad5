//! `mnemo dev`: a local cluster of real `mnemo node` processes on
//! consecutive ports, stopped together on Ctrl-C.

use std::process::Stdio;

use tokio::process::{Child, Command};

use crate::args::DevArgs;
use crate::client::Failure;

pub(crate) async fn run(args: DevArgs) -> Result<(), Failure> {
    if args.nodes == 0 {
        return Err(Failure("--nodes must be at least 1".into()));
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find the mnemo executable: {e}")))?;
    let seed = format!("127.0.0.1:{}", args.base_port);
    let ids: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    // A development cluster is secure too: its own CA, node and client
    // certificates under the data directory, made once and kept.
    let certs_dir = std::path::absolute(args.data_dir.join("certs"))
        .map_err(|e| Failure(format!("--data-dir: {e}")))?;
    let hosts = mnemo_node::security::certs::DEFAULT_HOSTS.map(String::from);
    mnemo_node::security::certs::create(&certs_dir, &ids, &hosts)
        .map_err(|e| Failure(format!("cannot make certificates: {e}")))?;
    let mut children: Vec<(String, Child)> = Vec::new();
    for (i, id) in (0..args.nodes).zip(ids) {
        let port = args.base_port.checked_add(i).ok_or_else(|| {
            Failure(format!(
                "--base-port {} leaves no room for {} nodes",
                args.base_port, args.nodes
            ))
        })?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .args(["--id", &id, "--listen", &listen])
            .args(["--expected-size", &args.nodes.to_string()])
            .arg("--data-dir")
            .arg(args.data_dir.join(&id))
            .arg("--certs-dir")
            .arg(&certs_dir)
            .env_remove("MNEMO_INSECURE")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if i > 0 {
            cmd.args(["--join", &seed]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure(format!("cannot start node {id}: {e}")))?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(prefix_lines(id.clone(), stderr));
        }
        children.push((id, child));
    }
    let addrs: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.1:{}", args.base_port + i))
        .collect();
    if let Err(e) = await_formed(&addrs, &certs_dir).await {
        eprintln!("mnemo dev: warning: {e}");
    }
    println!(
        "mnemo dev: {} nodes on 127.0.0.1:{}..{}, data under {}",
        args.nodes,
        args.base_port,
        args.base_port + args.nodes - 1,
        args.data_dir.display()
    );
    let node = if args.base_port == 7401 {
        String::new()
    } else {
        format!(" --node 127.0.0.1:{}", args.base_port)
    };
    println!("try:  export MNEMO_CERTS_DIR={}", certs_dir.display());
    println!("      mnemo remember{node} --space notes \"the standup moved to 10am\"");
    println!("      mnemo recall{node} --space notes \"when is standup\"");
    println!("      mnemo status --node 127.0.0.1:{}", args.base_port + 1);
    println!("Ctrl-C stops every node.");

    let mut exits = tokio::task::JoinSet::new();
    for (id, mut child) in children {
        exits.spawn(async move {
            tokio::select! {
                status = child.wait() => Some((id, status)),
                () = crate::node_cmd::shutdown_signal() => {
                    terminate(&mut child).await;
                    None
                }
            }
        });
    }
    let mut failure = None;
    while let Some(done) = exits.join_next().await {
        if let Ok(Some((id, status))) = done {
            let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            failure.get_or_insert_with(|| format!("node {id} exited ({how}); stopped the others"));
            exits.abort_all();
        }
    }
    match failure {
        Some(message) => Err(Failure(message)),
        None => Ok(()),
    }
}

/// SIGTERM first so the node leaves the cluster cleanly; SIGKILL if it lingers.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
        if tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Waits until every node sees all of them alive, so the first command a
/// person types is routed by a complete cluster.
async fn await_formed(addrs: &[String], certs_dir: &std::path::Path) -> Result<(), String> {
    use mnemo_proto::v1::{StatusRequest, mnemo_client::MnemoClient};
    let tls = mnemo_node::security::client_tls(certs_dir, true).map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    for addr in addrs {
        loop {
            let formed = async {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
                    .ok()?
                    .tls_config(tls.clone())
                    .ok()?;
                let mut client = MnemoClient::new(endpoint.connect().await.ok()?);
                let s = client.status(StatusRequest {}).await.ok()?.into_inner();
                let alive = s.members.iter().filter(|m| m.state == "alive").count();
                (alive == addrs.len() && s.partition == "connected").then_some(())
            };
            if formed.await.is_some() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "node {addr} did not see all {} nodes within 30 s",
                    addrs.len()
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Copies a node's log lines to our stderr, one whole line at a time and
/// marked with the node id, so the nodes' output does not interleave.
async fn prefix_lines(id: String, stderr: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{id}] {line}");
    }
}

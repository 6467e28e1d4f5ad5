//! `mnemo cluster`: every member's own view, side by side, and whether the
//! cluster is healthy. Exit 0 when it is, 2 when something is wrong (the
//! problems are listed), 1 when the first node cannot be asked at all.

use std::collections::BTreeMap;

use mnemo_proto::v1;
use serde::Serialize;

use crate::args::{Common, StatusArgs};
use crate::client::{Failure, connect, failed, print_json, request};

/// Exit code of an unhealthy cluster.
pub(crate) const UNHEALTHY: u8 = 2;

/// One member, as it answered (or did not).
#[derive(Debug, Serialize)]
struct NodeReport {
    id: String,
    addr: String,
    /// Its state in the asked node's view.
    state: String,
    reachable: bool,
    /// Its own view has the same members in the same states as the first.
    view_agrees: bool,
    partition: String,
    settled: bool,
    /// Peers whose breaker is not closed in this node.
    breakers_not_closed: Vec<String>,
    handoffs: usize,
    /// Writes queued for peers and elements waiting for repair.
    replication_pending: u64,
    replication_to_repair: u64,
    spaces: usize,
    catching_up: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    asked: String,
    nodes: Vec<NodeReport>,
    problems: Vec<String>,
}

/// A member view: id → state.
fn view(r: &v1::StatusResponse) -> BTreeMap<String, String> {
    r.members
        .iter()
        .map(|m| (m.id.clone(), m.state.clone()))
        .collect()
}

async fn ask(common: &Common, addr: &str) -> Result<v1::StatusResponse, String> {
    let mut at = common.clone();
    at.node = addr.to_owned();
    at.timeout = at.timeout.min(3_000);
    let mut client = connect(&at).await.map_err(|Failure(e)| e)?;
    client
        .status(request(&at, v1::StatusRequest {}))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| failed(&at, &s).0)
}

fn report_of(
    member: &v1::Member,
    answer: Result<v1::StatusResponse, String>,
    reference: &BTreeMap<String, String>,
) -> NodeReport {
    let mut r = NodeReport {
        id: member.id.clone(),
        addr: member.addr.clone(),
        state: member.state.clone(),
        reachable: false,
        view_agrees: false,
        partition: String::new(),
        settled: false,
        breakers_not_closed: Vec::new(),
        handoffs: 0,
        replication_pending: 0,
        replication_to_repair: 0,
        spaces: 0,
        catching_up: 0,
        error: None,
    };
    match answer {
        Err(e) => r.error = Some(e),
        Ok(s) => {
            r.reachable = true;
            r.view_agrees = &view(&s) == reference;
            r.partition.clone_from(&s.partition);
            r.settled = s.settled;
            r.breakers_not_closed = s
                .breakers
                .iter()
                .filter(|b| b.state != "closed")
                .map(|b| format!("{} {}", b.node, b.state))
                .collect();
            r.handoffs = s.handoffs.len();
            r.replication_pending = s.replication.iter().map(|p| p.pending).sum();
            r.replication_to_repair = s.replication.iter().map(|p| p.to_repair).sum();
            r.spaces = s.spaces.len();
            r.catching_up = s.spaces.iter().filter(|x| x.catching_up).count();
        }
    }
    r
}

fn problems(nodes: &[NodeReport]) -> Vec<String> {
    let mut out = Vec::new();
    for n in nodes {
        if n.state != "alive" && n.state != "left" {
            out.push(format!("{} is {}", n.id, n.state));
        }
        if n.state == "left" {
            continue;
        }
        if let Some(e) = &n.error {
            out.push(format!("{} ({}) did not answer: {e}", n.id, n.addr));
            continue;
        }
        if !n.view_agrees {
            out.push(format!(
                "{}'s view of the members differs from the others'",
                n.id
            ));
        }
        if n.partition != "connected" {
            out.push(format!("{} is {}", n.id, n.partition));
        }
        for b in &n.breakers_not_closed {
            out.push(format!("{}'s breaker for {b}", n.id));
        }
        if n.catching_up > 0 {
            out.push(format!(
                "{} is catching up on {} spaces",
                n.id, n.catching_up
            ));
        }
    }
    out
}

pub(crate) async fn run(a: StatusArgs) -> Result<u8, Failure> {
    let mut client = connect(&a.common).await?;
    let first = client
        .status(request(&a.common, v1::StatusRequest {}))
        .await
        .map_err(|s| failed(&a.common, &s))?
        .into_inner();
    let reference = view(&first);
    let mut asks = Vec::new();
    for m in &first.members {
        let answer = if m.id == first.node_id {
            Ok(first.clone())
        } else if m.state == "alive" || m.state == "suspect" {
            ask(&a.common, &m.addr).await
        } else {
            Err(format!("not asked: it is {}", m.state))
        };
        asks.push(report_of(m, answer, &reference));
    }
    let problems = problems(&asks);
    let report = Report {
        healthy: problems.is_empty(),
        asked: format!("{} at {}", first.node_id, first.addr),
        nodes: asks,
        problems,
    };
    if a.common.json {
        print_json(&report);
    } else {
        print_table(&report);
    }
    Ok(if report.healthy { 0 } else { UNHEALTHY })
}

fn print_table(r: &Report) {
    println!(
        "{} members (asked {}): {}",
        r.nodes.len(),
        r.asked,
        if r.healthy { "healthy" } else { "UNHEALTHY" }
    );
    println!(
        "\n{:<10}  {:<21}  {:<8}  {:<9}  {:<11}  {:>8}  {:>7}  {:>9}  {:>6}",
        "NODE",
        "ADDRESS",
        "STATE",
        "VIEW",
        "PARTITION",
        "HANDOFFS",
        "PENDING",
        "TO REPAIR",
        "SPACES"
    );
    for n in &r.nodes {
        let view = match (n.reachable, n.view_agrees) {
            (false, _) => "-",
            (true, true) => "agrees",
            (true, false) => "DIFFERS",
        };
        println!(
            "{:<10}  {:<21}  {:<8}  {:<9}  {:<11}  {:>8}  {:>7}  {:>9}  {:>6}",
            n.id,
            n.addr,
            n.state,
            view,
            if n.reachable {
                n.partition.as_str()
            } else {
                "-"
            },
            n.handoffs,
            n.replication_pending,
            n.replication_to_repair,
            n.spaces
        );
    }
    for p in &r.problems {
        println!("problem: {p}");
    }
}

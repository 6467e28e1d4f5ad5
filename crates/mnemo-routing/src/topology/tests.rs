use proptest::prelude::*;

use super::*;
use crate::placement::DEFAULT_RF;

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| {
            Member::alive(
                format!("node-{i:04}"),
                format!("10.0.{}.{}:7000", i / 250, i % 250),
            )
        })
        .collect()
}

fn topo(members: Vec<Member>) -> Topology {
    Topology::new(NodeId::from("node-0000"), members, DEFAULT_RF, 1)
}

fn ids(t: &Topology, space: &str) -> Vec<NodeId> {
    t.preference_list(space)
        .as_slice()
        .iter()
        .map(|&i| t.member(i).id.clone())
        .collect()
}

const SPACES: usize = 100_000;

fn space(i: usize) -> String {
    format!("space-{i}")
}

#[test]
fn balance_100_nodes_100k_spaces() {
    let t = topo(members(100));
    let mut load = vec![0u32; 100];
    for i in 0..SPACES {
        load[t.preference_list(&space(i)).primary().unwrap().get()] += 1;
    }
    let max = f64::from(*load.iter().max().unwrap());
    let mean = SPACES as f64 / 100.0;
    println!("max/mean primary load = {:.3}", max / mean);
    assert!(max / mean <= 1.15, "max/mean = {}", max / mean);
}

#[test]
fn removal_moves_only_the_removed_nodes_spaces() {
    let all = members(50);
    let before = topo(all.clone());
    let gone = NodeId::from("node-0017");
    let after = topo(all.into_iter().filter(|m| m.id != gone).collect());
    let mut moved = 0;
    for i in 0..20_000 {
        let s = space(i);
        let (b, a) = (ids(&before, &s), ids(&after, &s));
        if b.contains(&gone) {
            let rest: Vec<_> = b.iter().filter(|id| **id != gone).cloned().collect();
            // Survivors keep their order, so the first replica becomes primary.
            assert_eq!(&a[..rest.len()], &rest[..], "{s}");
            moved += usize::from(b[0] == gone);
        } else {
            assert_eq!(a, b, "{s} changed without involving the removed node");
        }
    }
    // ~1/N of spaces had the removed node as primary.
    assert!((200..=600).contains(&moved), "moved {moved}");
}

#[test]
fn addition_moves_only_spaces_the_new_node_wins() {
    let all = members(51);
    let new = all[50].id.clone();
    let before = topo(all[..50].to_vec());
    let after = topo(all);
    let mut moved = 0;
    for i in 0..20_000 {
        let s = space(i);
        let (b, a) = (ids(&before, &s), ids(&after, &s));
        if a[0] == b[0] {
            continue;
        }
        assert_eq!(a[0], new, "{s} moved to an old node");
        moved += 1;
    }
    assert!((200..=600).contains(&moved), "moved {moved}");
}

#[test]
fn down_members_are_not_placed_and_rf_is_capped() {
    let mut ms = members(4);
    ms[1].state = MemberState::Down;
    ms[2].state = MemberState::Left;
    let t = topo(ms);
    assert_eq!(t.rf(), 2);
    for i in 0..1000 {
        let l = t.preference_list(&space(i));
        assert_eq!(l.len(), 2);
        assert!(l.as_slice().iter().all(|&n| t.member(n).state.is_live()));
    }
    let empty = Topology::new(NodeId::from("x"), Vec::new(), 3, 0);
    assert!(empty.preference_list("a").is_empty());
    assert!(!empty.holds("a"));
}

#[test]
fn holds_counts_placement_before_peers_went_down() {
    let mut ms = members(5);
    let t = topo(ms.clone());
    let local = t.local_index().unwrap();
    // A space the local node holds as a replica stays held when others go down.
    let s = (0..10_000)
        .map(space)
        .find(|s| t.preference_list(s).as_slice()[1..].contains(&local))
        .unwrap();
    for m in &mut ms[1..] {
        m.state = MemberState::Down;
    }
    let cut = topo(ms);
    assert!(cut.holds(&s));
}

proptest! {
    #[test]
    fn deterministic_and_distinct(n in 1usize..40, rf in 1usize..6, rot in 0usize..40, seed in any::<u64>()) {
        let ms = members(n);
        let mut rotated = ms.clone();
        rotated.rotate_left(rot % n);
        let (a, b) = (topo(ms), Topology::new(NodeId::from("node-0000"), rotated, rf.max(1), 9));
        let a = Topology::new(a.local().clone(), a.members().to_vec(), rf, 1);
        for i in 0..50u64 {
            let s = format!("{:x}", seed.wrapping_add(i));
            prop_assert_eq!(ids(&a, &s), ids(&b, &s));
            let l = a.preference_list(&s);
            prop_assert_eq!(l.len(), rf.min(n));
            let mut v = l.as_slice().to_vec();
            v.sort_unstable();
            v.dedup();
            prop_assert_eq!(v.len(), l.len());
        }
    }
}

//! Property: holders of a space converge whatever happens to the messages
//! between them. Random client writes (remembers, with ids reused across
//! holders so that conflicts happen, and forgets) are taken by random holders;
//! what each write produced is delivered to the others duplicated, reordered
//! or lost; then anti-entropy runs between pairs. Every holder must end with
//! the same state: the union of memories minus tombstones, one version per id.

use std::collections::{BTreeMap, BTreeSet};

use mnemo_store::reconcile::{reconcile, respond};
use mnemo_store::{Element, Memory, Store};
use proptest::prelude::*;

const HOLDERS: usize = 3;
const SPACE: &str = "s";

#[derive(Debug, Clone)]
enum Write {
    Remember { id: u8, text: u8 },
    Forget { id: u8 },
}

fn write() -> impl Strategy<Value = (usize, Write)> {
    let w = prop_oneof![
        4 => (0u8..12, 0u8..3).prop_map(|(id, text)| Write::Remember { id, text }),
        1 => (0u8..12).prop_map(|id| Write::Forget { id }),
    ];
    (0..HOLDERS, w)
}

/// What happens to one write's elements on the way to one other holder.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    Lost,
    Once,
    Twice,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    prop_oneof![
        Just(Delivery::Lost),
        Just(Delivery::Once),
        Just(Delivery::Twice)
    ]
}

async fn sync(a: &Store, b: &Store) {
    let view = a.reconciliation(SPACE);
    let diff = reconcile(&view, |message| async move {
        Ok::<_, std::convert::Infallible>(respond(&b.reconciliation(SPACE), &message).unwrap())
    })
    .await
    .unwrap();
    b.merge(SPACE, a.elements(SPACE, &diff.have)).await.unwrap();
    a.merge(SPACE, b.elements(SPACE, &diff.need)).await.unwrap();
}

fn visible(store: &Store) -> BTreeMap<String, String> {
    (0u8..12)
        .filter_map(|id| {
            let id = format!("m{id}");
            store.get(SPACE, &id).map(|m| (id, m.content.clone()))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn holders_converge_to_the_union_minus_tombstones(
        writes in prop::collection::vec(write(), 1..40),
        deliveries in prop::collection::vec(delivery(), 80),
        order in prop::collection::vec(any::<u32>(), 80),
        pairs in prop::collection::vec((0..HOLDERS, 0..HOLDERS), 3..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let dirs: Vec<_> = (0..HOLDERS).map(|_| tempfile::tempdir().unwrap()).collect();
            let stores: Vec<Store> = dirs.iter().map(|d| Store::open(d.path()).unwrap()).collect();
            let mut remembered = BTreeSet::new();
            let mut forgotten = BTreeSet::new();
            // (to, elements) in flight.
            let mut in_flight: Vec<(usize, Vec<Element>)> = Vec::new();
            let mut d = deliveries.iter().cycle();
            for (holder, w) in &writes {
                let written = match w {
                    Write::Remember { id, text } => stores[*holder]
                        .remember(SPACE, Memory {
                            id: format!("m{id}"),
                            content: format!("text {text} of m{id}"),
                            confidence: 1.0,
                            ..Memory::default()
                        })
                        .await
                        .map(|(id, w)| { remembered.insert(id); w }),
                    Write::Forget { id } => {
                        forgotten.insert(format!("m{id}"));
                        stores[*holder].forget(SPACE, &format!("m{id}")).await
                    }
                };
                // Refusals (an id taken or forgotten on that holder) are fine.
                let Ok(written) = written else { continue };
                for to in (0..HOLDERS).filter(|to| to != holder) {
                    match d.next().unwrap() {
                        Delivery::Lost => {}
                        Delivery::Once => in_flight.push((to, written.elements.clone())),
                        Delivery::Twice => {
                            in_flight.push((to, written.elements.clone()));
                            in_flight.push((to, written.elements.clone()));
                        }
                    }
                }
            }
            // Deliver in a shuffled order.
            let mut keyed: Vec<(u32, (usize, Vec<Element>))> =
                order.iter().copied().cycle().zip(in_flight).collect();
            keyed.sort_by_key(|(k, _)| *k);
            for (_, (to, elements)) in keyed {
                stores[to].merge(SPACE, elements).await.unwrap();
            }
            // Anti-entropy: the random pairs, then a ring so everyone met.
            for &(a, b) in &pairs {
                if a != b {
                    sync(&stores[a], &stores[b]).await;
                }
            }
            for i in 0..HOLDERS {
                sync(&stores[i], &stores[(i + 1) % HOLDERS]).await;
            }
            for i in 0..HOLDERS {
                sync(&stores[i], &stores[(i + 1) % HOLDERS]).await;
            }

            let expected: BTreeSet<String> = remembered.difference(&forgotten).cloned().collect();
            let first = visible(&stores[0]);
            prop_assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), expected);
            let digest = stores[0].stats(SPACE).map(|s| s.digest);
            for s in &stores[1..] {
                prop_assert_eq!(&visible(s), &first);
                prop_assert_eq!(s.stats(SPACE).map(|s| s.digest), digest);
            }
            Ok(())
        })?;
    }
}

//! Property: holders of a space converge whatever happens to the messages
//! between them. Random client writes (remembers, with ids reused across
//! holders so that conflicts happen, forgets, recalls and consolidations
//! that decay, which change a memory's use) are taken by random holders;
//! what each write produced is delivered to the others duplicated, reordered
//! or lost; then anti-entropy runs between pairs. Every holder must end with
//! the same state: the union of memories minus tombstones, one version per id,
//! each with the join of every use it had anywhere.

use std::collections::{BTreeMap, BTreeSet};

use mnemo_store::decay::{Policy, with_usage};
use mnemo_store::reconcile::{reconcile, respond};
use mnemo_store::{Consolidate, Decay, Element, Memory, Store, Usage};
use proptest::prelude::*;

const HOLDERS: usize = 3;
const SPACE: &str = "s";

#[derive(Debug, Clone)]
enum Write {
    Remember {
        id: u8,
        text: u8,
    },
    Forget {
        id: u8,
    },
    /// A use of the memory the holder has under `id`: recalled on `day`,
    /// decayed as of `decayed` with half-life `half_life` days.
    Use {
        id: u8,
        day: u8,
        decayed: Option<(u8, u8)>,
    },
    /// A consolidation that decays as of `day`.
    Consolidate {
        day: u8,
    },
}

const DAY: i64 = 24 * 60 * 60 * 1000;

fn write() -> impl Strategy<Value = (usize, Write)> {
    let w = prop_oneof![
        4 => (0u8..12, 0u8..3).prop_map(|(id, text)| Write::Remember { id, text }),
        1 => (0u8..12).prop_map(|id| Write::Forget { id }),
        2 => (0u8..12, 0u8..60, proptest::option::of((0u8..90, 1u8..4)))
            .prop_map(|(id, day, decayed)| Write::Use { id, day, decayed }),
        1 => (0u8..90).prop_map(|day| Write::Consolidate { day }),
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

/// Each visible memory's text and current confidence.
fn visible(store: &Store) -> BTreeMap<String, (String, u32)> {
    (0u8..12)
        .filter_map(|id| {
            let id = format!("m{id}");
            store
                .get(SPACE, &id)
                .map(|m| (id, (m.content.clone(), m.current_confidence().to_bits())))
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
            // Per written memory (id, text): the latest recall and decay
            // date any holder gave it.
            let mut uses: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
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
                            created_at_ms: 1,
                            ..Memory::default()
                        })
                        .await
                        .map(|(id, w)| { remembered.insert(id); w.elements }),
                    Write::Forget { id } => {
                        forgotten.insert(format!("m{id}"));
                        stores[*holder].forget(SPACE, &format!("m{id}")).await.map(|w| w.elements)
                    }
                    Write::Use { id, day, decayed } => {
                        let Some(m) = stores[*holder].get(SPACE, &format!("m{id}")) else { continue };
                        let used = with_usage(&m, &Usage {
                            recalled_at_ms: i64::from(*day) * DAY,
                            decay: decayed.map(|(on, half_life)| Decay {
                                as_of_ms: i64::from(on) * DAY,
                                half_life_ms: i64::from(half_life) * 10 * DAY,
                                floor: 0.1,
                            }),
                        });
                        let elements = vec![Element::Memory(used)];
                        let merged = stores[*holder].merge(SPACE, elements.clone()).await.unwrap();
                        prop_assert!(merged.refused.is_empty());
                        prop_assert_eq!(merged.conflicts, 0, "a use is not a conflict");
                        Ok(elements)
                    }
                    Write::Consolidate { day } => stores[*holder]
                        .consolidate_with(SPACE, Consolidate {
                            threshold: 0.97,
                            dry_run: false,
                            decay: Some(Policy { half_life_ms: 20 * DAY, floor: 0.2 }),
                            as_of_ms: i64::from(*day) * DAY,
                        })
                        .await
                        .map(|r| r.elements),
                };
                // Refusals (an id taken or forgotten on that holder, a
                // space it has no memory of) are fine.
                let Ok(elements) = written else { continue };
                for e in &elements {
                    if let Element::Memory(m) = e {
                        let u = uses.entry((m.id.clone(), m.content.clone())).or_default();
                        u.0 = u.0.max(m.recalled_at_ms);
                        u.1 = u.1.max(m.decay.map_or(0, |d| d.as_of_ms));
                    }
                }
                for to in (0..HOLDERS).filter(|to| to != holder) {
                    match d.next().unwrap() {
                        Delivery::Lost => {}
                        Delivery::Once => in_flight.push((to, elements.clone())),
                        Delivery::Twice => {
                            in_flight.push((to, elements.clone()));
                            in_flight.push((to, elements.clone()));
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
            for (id, (content, _)) in &first {
                let m = stores[0].get(SPACE, id).unwrap();
                let expected = uses.get(&(id.clone(), content.clone())).copied().unwrap_or_default();
                prop_assert_eq!(
                    (m.recalled_at_ms, m.decay.map_or(0, |d| d.as_of_ms)),
                    expected,
                    "{} kept every use", id
                );
            }
            let digest = stores[0].stats(SPACE).map(|s| s.digest);
            for s in &stores[1..] {
                prop_assert_eq!(&visible(s), &first);
                prop_assert_eq!(s.stats(SPACE).map(|s| s.digest), digest);
            }
            Ok(())
        })?;
    }
}

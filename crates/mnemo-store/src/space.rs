//! What the store keeps in memory per space, shared by the facade (reads)
//! and the writer thread (publishing committed batches).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redb::Database;

use crate::index::SpaceIndex;
use crate::memory::Memory;
use crate::set::{ElementId, SpaceSet};

/// One space: the recall index of its live memories and its element set.
/// Lock order: `index` before `set`.
#[derive(Default)]
pub(crate) struct Space {
    pub(crate) index: RwLock<SpaceIndex>,
    pub(crate) set: RwLock<SpaceSet>,
}

pub(crate) struct Shared {
    pub(crate) db: Database,
    spaces: RwLock<HashMap<String, Arc<Space>>>,
}

/// How a committed batch changes what is in memory.
pub(crate) enum Effect {
    /// A memory became visible (or replaced another version of its id).
    Insert(Arc<Memory>, ElementId),
    /// An id was tombstoned; its memory, if any, is gone.
    Tombstone(String),
    /// The space was dropped from this node.
    Drop,
}

impl Shared {
    pub(crate) fn new(db: Database) -> Self {
        Shared {
            db,
            spaces: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn space(&self, name: &str) -> Option<Arc<Space>> {
        self.spaces
            .read()
            .expect("lock poisoned")
            .get(name)
            .cloned()
    }

    pub(crate) fn space_or_create(&self, name: &str) -> Arc<Space> {
        if let Some(s) = self.space(name) {
            return s;
        }
        let mut spaces = self.spaces.write().expect("lock poisoned");
        Arc::clone(spaces.entry(name.to_owned()).or_default())
    }

    pub(crate) fn all(&self) -> Vec<(String, Arc<Space>)> {
        self.spaces
            .read()
            .expect("lock poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }

    /// Makes a committed batch visible to readers.
    pub(crate) fn publish(&self, effects: Vec<(String, Effect)>) {
        for (space, effect) in effects {
            if matches!(effect, Effect::Drop) {
                self.spaces.write().expect("lock poisoned").remove(&space);
                continue;
            }
            // Words are counted before the locks are taken: readers of the
            // space do not wait for a long text to be tokenized.
            let words = match &effect {
                Effect::Insert(m, _) => crate::text::terms(&m.content),
                _ => Vec::new(),
            };
            let s = self.space_or_create(&space);
            let mut ix = s.index.write().expect("lock poisoned");
            let mut set = s.set.write().expect("lock poisoned");
            match effect {
                Effect::Insert(m, element) => {
                    if ix.dim() == 0 {
                        ix.set_dim(m.embedding.len());
                    }
                    set.insert_memory(&m.id, element);
                    ix.insert(m, &words);
                }
                Effect::Tombstone(id) => {
                    ix.remove(&id);
                    set.insert_tombstone(&id);
                }
                Effect::Drop => unreachable!("handled above"),
            }
        }
    }
}

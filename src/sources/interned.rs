//! Keys numbered by small integers, so the series state hashes a label string once per series and a
//! request, and its log writes a number where it would write a string again.
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// `logged_in` of a key not yet written to any log.
const NEVER_LOGGED: u64 = u64::MAX;

#[derive(Debug, Clone)]
struct Slot<K, V> {
    key: K,
    value: V,
    /// The log generation whose log already names this key (see `State::new_log`).
    logged_in: u64,
}

/// Keys with their numbers and values; a removed key's number is given to the next new key.
#[derive(Debug, Clone)]
pub struct Interned<K, V> {
    ids: FastMap<K, u32>,
    slots: Vec<Option<Slot<K, V>>>,
    free: Vec<u32>,
}

impl<K, V> Default for Interned<K, V> {
    fn default() -> Self {
        Self {
            ids: FastMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V> Interned<K, V> {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn id<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
    {
        self.ids.get(key).copied()
    }

    /// Numbers a key that has none yet.
    pub fn insert(&mut self, key: K, value: V) -> u32 {
        let slot = Some(Slot {
            key: key.clone(),
            value,
            logged_in: NEVER_LOGGED,
        });
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                // Numbers are reused, so they stay below the live keys' count: far from 2^32.
                (self.slots.len() - 1) as u32
            }
        };
        self.ids.insert(key, id);
        id
    }

    fn slot(&self, id: u32) -> Option<&Slot<K, V>> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub fn key(&self, id: u32) -> Option<&K> {
        self.slot(id).map(|s| &s.key)
    }

    pub fn value(&self, id: u32) -> Option<&V> {
        self.slot(id).map(|s| &s.value)
    }

    pub fn value_mut(&mut self, id: u32) -> Option<&mut V> {
        self.slots
            .get_mut(id as usize)?
            .as_mut()
            .map(|s| &mut s.value)
    }

    /// Whether `id`'s key still has to be written to the log of `generation`; notes that it now is.
    pub fn log_in(&mut self, id: u32, generation: u64) -> bool {
        match self.slots.get_mut(id as usize).and_then(Option::as_mut) {
            Some(slot) if slot.logged_in != generation => {
                slot.logged_in = generation;
                true
            }
            _ => false,
        }
    }

    /// Keeps the keys `keep` accepts (it may change their values as it goes) and frees the others'
    /// numbers.
    pub fn retain(&mut self, mut keep: impl FnMut(u32, &mut V) -> bool) {
        for (id, slot) in self.slots.iter_mut().enumerate() {
            let Some(live) = slot else { continue };
            let id = id as u32;
            if !keep(id, &mut live.value) {
                self.ids.remove(&live.key);
                *slot = None;
                self.free.push(id);
            }
        }
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = (u32, &mut V)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_mut().map(|s| (id as u32, &mut s.value)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &K, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_ref().map(|s| (id as u32, &s.key, &s.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_number_goes_to_the_next_key_which_is_then_logged_afresh() {
        let mut keys: Interned<String, i64> = Interned::default();
        let a = keys.insert("a".into(), 1);
        let b = keys.insert("b".into(), 2);
        assert!(keys.log_in(a, 0) && !keys.log_in(a, 0) && keys.log_in(a, 1));
        keys.retain(|_, v| *v != 1);
        assert_eq!((keys.id("a"), keys.len()), (None, 1));
        let c = keys.insert("c".into(), 3);
        assert_eq!(c, a);
        assert!(keys.log_in(c, 1), "a reused number names a new key");
        assert_eq!(
            (keys.key(b), keys.value(c)),
            (Some(&"b".to_owned()), Some(&3))
        );
    }
}

//! Identity by address: "this very object", not "an equal object", as a map key.
//!
//! Comparing two routes by value means hashing or comparing everything in them; when a
//! map only needs to know whether it holds *the same* shared object (the route reused
//! from the previous table, the watched object whose status was checked), the address
//! of its allocation says so at once. A bare address (`Arc::as_ptr(x) as usize`) is not
//! enough: once the object is freed, a newer object can be allocated at the same
//! address and be taken for the old one (commit 0b31458 fixed one such wrong table).
//!
//! [`ByAddress`] is the key that cannot be fooled that way: it holds the `Arc` it is
//! keyed by, so the address stays that object's for as long as the key lives. Two keys
//! are equal when they hold the same allocation ([`Arc::ptr_eq`]). Lookups need no
//! `Arc` clone: [`Address::of`] borrows the object being looked up, and a map keyed by
//! `ByAddress<T>` answers `get(&Address::of(&arc))`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

/// A shared object as a key by its identity (see the module docs). `T` may be unsized,
/// e.g. `ByAddress<dyn Any + Send + Sync>` for objects of several types in one map.
pub struct ByAddress<T: ?Sized> {
    object: Arc<T>,
    /// `object`'s address; valid for as long as `object` is held, which is as long as
    /// `self` lives (handed out only borrowed from `self`).
    address: Address<'static>,
}

/// The address of an object someone holds, borrowed from its `Arc` for a lookup in a
/// map keyed by [`ByAddress`]. It can neither outlive that `Arc` nor be copied out of a
/// key, so it never names a freed object.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Address<'a> {
    address: usize,
    object: PhantomData<&'a ()>,
}

// === impl Address ===

impl<'a> Address<'a> {
    /// The address of `object`, for as long as it is borrowed.
    pub fn of<T: ?Sized>(object: &'a Arc<T>) -> Address<'a> {
        Address {
            address: Arc::as_ptr(object).cast::<()>().addr(),
            object: PhantomData,
        }
    }
}

// === impl ByAddress ===

impl<T: ?Sized> ByAddress<T> {
    /// `object` as a key by its identity.
    pub fn new(object: Arc<T>) -> ByAddress<T> {
        let address = Address::of(&object).address;
        ByAddress {
            object,
            address: Address {
                address,
                object: PhantomData,
            },
        }
    }

    /// The object.
    pub fn as_arc(&self) -> &Arc<T> {
        &self.object
    }

    /// The object, no longer a key.
    pub fn into_arc(self) -> Arc<T> {
        self.object
    }

    /// The key's address, borrowed from it.
    pub fn address(&self) -> &Address<'_> {
        &self.address
    }
}

impl<T: ?Sized> From<Arc<T>> for ByAddress<T> {
    fn from(object: Arc<T>) -> ByAddress<T> {
        ByAddress::new(object)
    }
}

impl<T: ?Sized> Clone for ByAddress<T> {
    fn clone(&self) -> ByAddress<T> {
        ByAddress::new(self.object.clone())
    }
}

impl<T: ?Sized> Deref for ByAddress<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T: ?Sized> PartialEq for ByAddress<T> {
    fn eq(&self, other: &ByAddress<T>) -> bool {
        Arc::ptr_eq(&self.object, &other.object)
    }
}

impl<T: ?Sized> Eq for ByAddress<T> {}

/// The same hash as the key's [`Address`], so that the map finds it by either.
impl<T: ?Sized> Hash for ByAddress<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.address.hash(state);
    }
}

/// Looking a key up by the [`Address`] of an object held elsewhere: equal exactly when
/// the key holds that object ([`Arc::ptr_eq`] compares addresses, and two live objects
/// never share one).
impl<'a, T: ?Sized> Borrow<Address<'a>> for ByAddress<T> {
    fn borrow(&self) -> &Address<'a> {
        &self.address
    }
}

/// The address only: `T` need not be `Debug`, and the value is not what the key is.
impl<T: ?Sized> fmt::Debug for ByAddress<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ByAddress")
            .field(&format_args!("{:#x}", self.address.address))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn the_same_object_is_the_same_key_and_an_equal_one_is_not() {
        let a = Arc::new(String::from("route"));
        let b = Arc::new(String::from("route"));
        assert_eq!(ByAddress::new(a.clone()), ByAddress::new(a.clone()));
        assert_ne!(ByAddress::new(a.clone()), ByAddress::new(b.clone()));
        let key = ByAddress::new(a.clone());
        assert_eq!(key.clone(), key);
        assert_eq!(&*key, "route");
        assert!(Arc::ptr_eq(key.as_arc(), &a));
        assert!(Arc::ptr_eq(&key.into_arc(), &a));
    }

    #[test]
    fn a_map_finds_its_keys_by_the_address_of_an_object_held_elsewhere() {
        let a = Arc::new(1u32);
        let b = Arc::new(1u32);
        let map: HashMap<ByAddress<u32>, &str> = [(ByAddress::new(a.clone()), "a")].into();
        assert_eq!(map.get(&Address::of(&a)), Some(&"a"));
        assert_eq!(map.get(&Address::of(&b)), None);
        assert_eq!(map.get(&ByAddress::new(a.clone())), Some(&"a"));
        let key = ByAddress::new(a.clone());
        assert_eq!(map.get(key.address()), Some(&"a"));
    }

    #[test]
    fn objects_of_several_types_share_one_map_by_identity() {
        let route = Arc::new(String::from("r"));
        let upstream = Arc::new(7u64);
        let held: [Arc<dyn Any + Send + Sync>; 2] = [route.clone(), upstream.clone()];
        let map: HashMap<ByAddress<dyn Any + Send + Sync>, usize> = held
            .into_iter()
            .map(ByAddress::new)
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        assert_eq!(map.get(&Address::of(&route)), Some(&0));
        assert_eq!(map.get(&Address::of(&upstream)), Some(&1));
        assert_eq!(map.get(&Address::of(&Arc::new(7u64))), None);
    }

    #[test]
    fn a_key_keeps_its_object_so_no_newer_object_is_taken_for_it() {
        let mut keys = HashSet::new();
        for i in 0..64u64 {
            // Every other handle is dropped at once: only the key holds the object.
            assert!(keys.insert(ByAddress::new(Arc::new(i))));
        }
        for key in &keys {
            assert_eq!(Arc::strong_count(key.as_arc()), 1);
        }
        // Newer objects of the same size, allocated while the keys live, are never
        // found: the keys' addresses cannot be reused.
        let newer: Vec<Arc<u64>> = (0..1024u64).map(Arc::new).collect();
        assert!(newer.iter().all(|n| !keys.contains(&Address::of(n))));
    }

    #[test]
    fn debug_shows_the_address_not_the_value() {
        let key = ByAddress::new(Arc::new(String::from("secret")));
        let shown = format!("{key:?}");
        assert!(shown.starts_with("ByAddress(0x"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}

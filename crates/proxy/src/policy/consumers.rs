//! The consumers of a table, indexed for authentication: by API-key digest and by
//! basic-auth user name. Built once per table (kept while the table's consumers are
//! unchanged); a rule's method then checks the namespace and its `consumerSelector`
//! against the one consumer found.
//!
//! API keys are held only as SHA-256 digests (the compiler hashed them). A presented key
//! is hashed, looked up by the digest's first eight bytes, and compared in full in
//! constant time, so how long the comparison takes says nothing about the stored digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_table::Consumer as TableConsumer;
use gatehouse_table::auth::Sealed;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

/// One consumer, as authentication sees it.
#[derive(Debug)]
pub struct Consumer {
    /// Namespace: the consumer counts for routes of this namespace only.
    pub namespace: Arc<str>,
    /// Its name (the `gatehouse.dev/consumer` label's value).
    pub name: Arc<str>,
    /// Its Secret's labels, for `consumerSelector`.
    pub labels: BTreeMap<String, String>,
    /// Its groups.
    pub groups: Arc<[String]>,
    api_key: Option<[u8; 32]>,
    /// The bcrypt hash; `None` once withheld (a table loaded from disk).
    pub password_hash: Option<Sealed>,
}

impl Consumer {
    /// Whether it counts for a rule of `namespace` whose selector is `selector`.
    pub fn selected(&self, namespace: &str, selector: &BTreeMap<String, String>) -> bool {
        &*self.namespace == namespace
            && selector
                .iter()
                .all(|(k, v)| self.labels.get(k).is_some_and(|l| l == v))
    }
}

/// A table's consumers, indexed.
#[derive(Debug, Default)]
pub struct Consumers {
    /// By the first eight bytes of the key digest; several on a (rare) prefix clash, or
    /// when two namespaces issued the same key.
    by_key: FxHashMap<u64, Vec<Arc<Consumer>>>,
    /// By user name; one per namespace.
    by_user: FxHashMap<String, Vec<Arc<Consumer>>>,
}

fn prefix(d: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// Equal in time independent of where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Consumers {
    /// Indexes `consumers`.
    pub fn new(consumers: &[TableConsumer]) -> Consumers {
        let mut out = Consumers::default();
        for c in consumers {
            let consumer = Arc::new(Consumer {
                namespace: c.namespace.as_str().into(),
                name: c.name.as_str().into(),
                labels: c.labels.clone(),
                groups: c.groups.clone().into(),
                api_key: c.api_key_sha256.as_deref().and_then(parse_hex32),
                password_hash: c.password_hash.clone(),
            });
            if let Some(d) = &consumer.api_key {
                out.by_key
                    .entry(prefix(d))
                    .or_default()
                    .push(consumer.clone());
            }
            if let Some(user) = &c.username {
                out.by_user
                    .entry(user.clone())
                    .or_default()
                    .push(consumer.clone());
            }
        }
        out
    }

    /// The consumer of `namespace` holding API key `key`, if its labels match
    /// `selector`.
    pub fn by_api_key(
        &self,
        key: &[u8],
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<&Arc<Consumer>> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        self.by_key.get(&prefix(&digest))?.iter().find(|c| {
            c.api_key.is_some_and(|k| ct_eq(&k, &digest)) && c.selected(namespace, selector)
        })
    }

    /// The consumer of `namespace` with user name `user`, if its labels match `selector`.
    pub fn by_user(
        &self,
        user: &str,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<&Arc<Consumer>> {
        self.by_user
            .get(user)?
            .iter()
            .find(|c| c.selected(namespace, selector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(ns: &str, name: &str, key: &str, team: &str) -> TableConsumer {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        TableConsumer {
            id: format!("{ns}/{name}"),
            namespace: ns.into(),
            name: name.into(),
            labels: [("team".to_string(), team.to_string())].into(),
            api_key_sha256: Some(digest.iter().map(|b| format!("{b:02x}")).collect()),
            username: Some(name.into()),
            password_hash: None,
            groups: vec!["g".into()],
        }
    }

    #[test]
    fn keys_are_found_by_digest_in_their_namespace_and_selector() {
        let index = Consumers::new(&[
            consumer("shop", "alice", "k1", "payments"),
            consumer("shop", "bob", "k2", "search"),
            consumer("other", "carol", "k1", "payments"),
        ]);
        let none = BTreeMap::new();
        let payments: BTreeMap<_, _> = [("team".to_string(), "payments".to_string())].into();
        let name = |c: Option<&Arc<Consumer>>| c.map(|c| c.name.to_string());
        assert_eq!(
            name(index.by_api_key(b"k1", "shop", &none)),
            Some("alice".into())
        );
        assert_eq!(
            name(index.by_api_key(b"k1", "other", &none)),
            Some("carol".into())
        );
        assert_eq!(name(index.by_api_key(b"k2", "shop", &payments)), None);
        assert_eq!(name(index.by_api_key(b"k3", "shop", &none)), None);
        assert_eq!(name(index.by_api_key(b"", "shop", &none)), None);
        assert_eq!(
            name(index.by_user("bob", "shop", &none)),
            Some("bob".into())
        );
        assert_eq!(name(index.by_user("bob", "other", &none)), None);
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}

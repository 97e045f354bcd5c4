//! Leader election over the Lease `gatehouse-controller`: only its holder writes status
//! and Events. Every replica still watches, compiles and pushes to its own proxy.
//!
//! The holder renews every [`RENEW`]. Another replica takes the Lease once it has not
//! been renewed for its duration. Every write carries the `resourceVersion` it read, so
//! two replicas racing for an expired Lease cannot both win. A holder that cannot renew
//! stops acting as leader before the Lease could expire (`2/3` of the duration), so two
//! replicas never write status at the same time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// The Lease's name.
pub const LEASE_NAME: &str = "gatehouse-controller";
/// How long a Lease stays held without renewal.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and others check).
pub const RENEW: Duration = Duration::from_secs(2);

/// A round of the election that could not read or write the Lease.
#[derive(Debug, thiserror::Error)]
#[error("Lease {namespace}/{LEASE_NAME}: {source}")]
pub struct LeaseError {
    /// The Lease's namespace.
    pub namespace: String,
    /// The API server's answer.
    #[source]
    pub source: kube::Error,
}

/// Whether this replica holds the Lease now.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    /// True while this replica may write status.
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Whether `lease` is free for `identity` at `at`: unheld, held by it, or expired.
fn available(lease: &Lease, identity: &str, at: Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return true;
    }
    let duration = spec.lease_duration_seconds.map_or(DURATION, |s| {
        Duration::from_secs(u64::try_from(s).unwrap_or(15))
    });
    match &spec.renew_time {
        Some(MicroTime(renewed)) => {
            let expires =
                renewed.as_millisecond() + i64::try_from(duration.as_millis()).unwrap_or(15_000);
            at.as_millisecond() > expires
        }
        None => true,
    }
}

/// Runs the election forever for `identity`; `leadership` follows the outcome.
pub async fn elect(client: Client, namespace: String, identity: String, leadership: Leadership) {
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        let round = try_hold(&api, &identity)
            .await
            .map_err(|source| LeaseError {
                namespace: namespace.clone(),
                source,
            });
        match round {
            Ok(true) => {
                if !leadership.0.swap(true, Ordering::AcqRel) {
                    tracing::info!(%identity, lease = LEASE_NAME, %namespace, "became leader: writing status");
                }
                last_renewal = tokio::time::Instant::now();
            }
            Ok(false) => {
                if leadership.0.swap(false, Ordering::AcqRel) {
                    tracing::warn!(%identity, "lost the lease to another replica");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if leadership.is_leader() && last_renewal.elapsed() > DURATION * 2 / 3 {
                    leadership.0.store(false, Ordering::Release);
                    tracing::warn!(%identity, "stepping down: the lease could not be renewed in time");
                }
            }
        }
        tokio::time::sleep(RENEW).await;
    }
}

/// One round: take or renew the Lease when it is available. `Ok(true)` when held.
async fn try_hold(api: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(DURATION.as_secs()).unwrap_or(15);
    match api.get_opt(LEASE_NAME).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.into()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                // Another replica created it first.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !available(&lease, identity, Timestamp::now()) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(identity) {
                spec.holder_identity = Some(identity.into());
                spec.acquire_time = Some(now());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(now());
            spec.lease_duration_seconds = Some(seconds);
            // `replace` carries the resourceVersion read above: a concurrent writer
            // makes this fail with 409 instead of both replicas holding the Lease.
            match api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_ms: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    Timestamp::from_millisecond(renewed_ms).expect("timestamp"),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_available_to_its_holder_or_once_expired() {
        let at = Timestamp::from_millisecond(100_000).expect("timestamp");
        assert!(available(&lease("me", 99_000), "me", at));
        assert!(!available(&lease("other", 99_000), "me", at));
        assert!(
            !available(&lease("other", 85_000), "me", at),
            "exactly at expiry"
        );
        assert!(available(&lease("other", 84_000), "me", at));
        assert!(available(&lease("", 99_000), "me", at));
    }
}

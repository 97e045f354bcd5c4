//! Upstream → `table::Upstream`: defaults, durations, static endpoints or a Service's
//! EndpointSlices (ready endpoints; serving-but-terminating only when none is ready).

use std::collections::BTreeSet;
use std::net::IpAddr;

use gatehouse_api::upstream::{LoadBalancerPolicy, StaticEndpoint, UpstreamSpec};
use gatehouse_api::{PortRef, Upstream};
use gatehouse_table::{
    self as table, BlockReason, Blocker, Discovery, Endpoint, LoadBalancer, Protocol, Timeouts,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::diagnostics::{Kind, ObjectRef, Reason, Sink};
use crate::values::{is_dns_name, parse_duration};
use crate::{Index, UpstreamInfo};
use crate::{resilience, support};

const DEFAULT_CONNECT_MS: u64 = 2_000;
const DEFAULT_REQUEST_MS: u64 = 30_000;
const DEFAULT_IDLE_MS: u64 = 90_000;

/// Label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub(crate) fn compile(up: &Upstream, index: &Index<'_>, sink: &mut Sink<'_>) -> UpstreamInfo {
    let ns = sink.object().namespace.clone();
    let id = sink.object().id();
    let spec = &up.spec;
    let mut d = Durations { sink, valid: true };
    let timeouts = timeouts(spec, &mut d);
    let hash_on = resilience::hash_on(spec, &mut d);
    let retries = resilience::retries(spec, &mut d);
    let health_check = resilience::health_check(spec, &mut d);
    let circuit_breaker = resilience::circuit_breaker(spec, &mut d);
    let (sink, mut valid) = (d.sink, d.valid);

    let (discovery, endpoints, total) = match (&spec.service, &spec.endpoints) {
        (Some(_), Some(_)) | (None, None) => {
            sink.error(
                "spec",
                Reason::Invalid,
                "exactly one of service or endpoints must be set",
            );
            valid = false;
            (Discovery::Static, Vec::new(), 0)
        }
        (None, Some(list)) => {
            let eps = static_endpoints(list, sink, &mut valid);
            let total = eps.len() as u32;
            (Discovery::Static, eps, total)
        }
        (Some(svc), None) => {
            let discovery = Discovery::Service {
                name: svc.name.clone(),
                port: svc.port.to_string(),
            };
            match resolve_service(&ns, &svc.name, &svc.port, index, sink) {
                Some(port_name) => {
                    let slices = index.slices_for(&ns, &svc.name);
                    let (eps, all) = endpoints_from_slices(&slices, port_name.as_deref());
                    (discovery, eps, all)
                }
                None => (discovery, Vec::new(), 0),
            }
        }
    };
    if let Some(sni) = spec.tls.as_ref().and_then(|t| t.sni.as_ref())
        && !is_dns_name(&sni.to_ascii_lowercase())
        && sni.parse::<IpAddr>().is_err()
    {
        sink.error(
            "spec.tls.sni",
            Reason::Invalid,
            format!("{sni:?} is not a DNS name or an IP address"),
        );
        valid = false;
    }
    let mut blocked = blockers(spec, sink);
    let tls = spec
        .tls
        .as_ref()
        .and_then(|t| tls(t, &endpoints, &id, &ns, index, sink, &mut blocked));
    let upstream = valid.then(|| table::Upstream {
        id,
        protocol: match spec.protocol.unwrap_or_default() {
            gatehouse_api::upstream::UpstreamProtocol::Http1 => Protocol::Http1,
            gatehouse_api::upstream::UpstreamProtocol::Http2 => Protocol::Http2,
        },
        discovery,
        endpoints,
        timeouts,
        load_balancer: load_balancer(spec),
        hash_on,
        retries,
        health_check,
        circuit_breaker,
        tls,
        blocked,
    });
    // Endpoints that receive traffic: none when the Upstream is not served.
    let ready = upstream.as_ref().map_or(0, |u| u.endpoints.len() as u32);
    UpstreamInfo {
        upstream,
        ready_endpoints: ready,
        total_endpoints: total,
    }
}

/// `spec.timeouts`, defaults applied.
fn timeouts(spec: &UpstreamSpec, d: &mut Durations<'_, '_>) -> Timeouts {
    let t = spec.timeouts.as_ref();
    Timeouts {
        connect_ms: d.ms(
            "spec.timeouts.connect",
            t.and_then(|t| t.connect.as_ref()),
            DEFAULT_CONNECT_MS,
        ),
        request_ms: d.ms(
            "spec.timeouts.request",
            t.and_then(|t| t.request.as_ref()),
            DEFAULT_REQUEST_MS,
        ),
        idle_ms: d.ms(
            "spec.timeouts.idle",
            t.and_then(|t| t.idle.as_ref()),
            DEFAULT_IDLE_MS,
        ),
    }
}

/// `spec.endpoints`, sorted and without duplicates; a bad one is reported and left out.
fn static_endpoints(
    list: &[StaticEndpoint],
    sink: &mut Sink<'_>,
    valid: &mut bool,
) -> Vec<Endpoint> {
    let mut eps = BTreeSet::new();
    for (i, e) in list.iter().enumerate() {
        let host = e.host.to_ascii_lowercase();
        if host.parse::<IpAddr>().is_err() && !is_dns_name(&host) {
            sink.error(
                format!("spec.endpoints[{i}].host"),
                Reason::Invalid,
                format!("{:?} is neither an IP address nor a DNS name", e.host),
            );
            *valid = false;
            continue;
        }
        if e.port == 0 {
            sink.error(
                format!("spec.endpoints[{i}].port"),
                Reason::Invalid,
                "port 0",
            );
            *valid = false;
            continue;
        }
        let weight = e.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            sink.error(
                format!("spec.endpoints[{i}].weight"),
                Reason::Invalid,
                format!("weight {weight} is outside 1..1000"),
            );
            *valid = false;
            continue;
        }
        eps.insert(Endpoint {
            host,
            port: e.port,
            weight,
            ready: true,
        });
    }
    eps.into_iter().collect()
}

/// Why requests to the upstream are answered 503: fields the data plane does not
/// implement.
fn blockers(spec: &UpstreamSpec, sink: &mut Sink<'_>) -> Vec<Blocker> {
    let id = sink.object().id();
    let blocked: Vec<Blocker> = support::unsupported_upstream_fields(spec)
        .into_iter()
        .map(|field| {
            sink.error(
                field,
                Reason::UnsupportedValue,
                "not implemented by this gateway version yet; requests to this upstream are answered 503 until it is",
            );
            Blocker {
                field: format!("Upstream {id} {field}"),
                reason: BlockReason::UnsupportedValue,
            }
        })
        .collect();
    blocked
}

/// `spec.tls`: what the proxy needs to speak TLS to the servers. A CA or client
/// certificate Secret that is missing or unusable blocks the upstream (503): it never
/// falls back to other trust roots or to no client certificate.
fn tls(
    t: &gatehouse_api::upstream::UpstreamTls,
    endpoints: &[Endpoint],
    id: &str,
    ns: &str,
    index: &Index<'_>,
    sink: &mut Sink<'_>,
    blocked: &mut Vec<Blocker>,
) -> Option<table::UpstreamTls> {
    let mut block = |sink: &mut Sink<'_>, field: &str, reason: Reason, message: String| {
        sink.error(
            field,
            reason,
            format!("{message}; requests to this upstream are answered 503"),
        );
        blocked.push(Blocker {
            field: format!("Upstream {id} {field}"),
            reason: match reason {
                Reason::SecretNotFound => BlockReason::SecretNotFound,
                _ => BlockReason::InvalidCertificate,
            },
        });
    };
    let mut out = table::UpstreamTls {
        // The endpoint host when it is a name (static endpoints share one name, or the
        // first is taken); IP addresses are verified as such, without SNI.
        sni: t.sni.clone().or_else(|| {
            endpoints
                .iter()
                .find(|e| e.host.parse::<IpAddr>().is_err())
                .map(|e| e.host.clone())
        }),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        ..Default::default()
    };
    if out.insecure_skip_verify {
        sink.warning(
            "spec.tls.insecureSkipVerify",
            Reason::Invalid,
            "the servers' certificates are not verified: anyone on the network path can \
             read and change this traffic; use caSecretRef instead",
        );
    }
    if let Some(r) = &t.ca_secret_ref {
        let field = "spec.tls.caSecretRef";
        match index.secret(ns, &r.name) {
            None => block(
                sink,
                field,
                Reason::SecretNotFound,
                format!("Secret {ns}/{} not found", r.name),
            ),
            Some(secret) => match crate::tls::ca_bundle(&format!("{ns}/{}", r.name), secret) {
                Ok(pem) => out.ca = Some(pem),
                Err(why) => block(sink, field, Reason::InvalidCertificate, why),
            },
        }
    }
    if let Some(r) = &t.client_certificate_ref {
        let field = "spec.tls.clientCertificateRef";
        let secret_id = format!("{ns}/{}", r.name);
        match index.secret(ns, &r.name) {
            None => block(
                sink,
                field,
                Reason::SecretNotFound,
                format!("Secret {secret_id} not found"),
            ),
            Some(secret) => match crate::tls::check(&secret_id, secret, crate::tls::now()) {
                Ok(checked) => out.client_certificate = Some(checked.certificate),
                Err(why) => block(sink, field, Reason::InvalidCertificate, why),
            },
        }
    }
    Some(out)
}

/// `spec.loadBalancer.policy`, default `RoundRobin`.
fn load_balancer(spec: &UpstreamSpec) -> LoadBalancer {
    let policy = spec
        .load_balancer
        .as_ref()
        .and_then(|l| l.policy)
        .unwrap_or_default();
    match policy {
        LoadBalancerPolicy::RoundRobin => LoadBalancer::RoundRobin,
        LoadBalancerPolicy::LeastRequest => LoadBalancer::LeastRequest,
        LoadBalancerPolicy::Random => LoadBalancer::Random,
        LoadBalancerPolicy::RingHash => LoadBalancer::RingHash,
        LoadBalancerPolicy::Maglev => LoadBalancer::Maglev,
        LoadBalancerPolicy::PeakEwma => LoadBalancer::PeakEwma,
    }
}

/// Parses durations into milliseconds, reporting each bad one.
pub(crate) struct Durations<'a, 's> {
    pub sink: &'a mut Sink<'s>,
    pub valid: bool,
}

impl Durations<'_, '_> {
    /// A positive duration, or `default` when absent (or invalid, after reporting it).
    pub fn ms(&mut self, field: &str, d: Option<&gatehouse_api::Duration>, default: u64) -> u64 {
        let Some(d) = d else { return default };
        match parse_duration(&d.0) {
            Ok(0) => self.fail(field, "must be greater than 0".into()),
            Ok(v) => return v,
            Err(e) => self.fail(field, e),
        }
        default
    }

    pub fn fail(&mut self, field: &str, message: String) {
        self.sink.error(field, Reason::Invalid, message);
        self.valid = false;
    }
}

/// Maps the Upstream's `service.port` to the EndpointSlice port name. `Some(None)`: the
/// Service's only port is unnamed.
fn resolve_service(
    ns: &str,
    name: &str,
    port: &PortRef,
    index: &Index<'_>,
    sink: &mut Sink<'_>,
) -> Option<Option<String>> {
    let Some(svc) = index.service(ns, name) else {
        sink.error(
            "spec.service.name",
            Reason::ServiceNotFound,
            format!("Service {ns}/{name} not found"),
        );
        return None;
    };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let found = ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(s) => p.name.as_deref() == Some(s.as_str()),
    });
    match found {
        Some(p) => Some(p.name.clone().filter(|n| !n.is_empty())),
        None => {
            sink.error(
                "spec.service.port",
                Reason::PortNotFound,
                format!("Service {ns}/{name} has no port {port}"),
            );
            None
        }
    }
}

/// Ready endpoints of the slices for the port named `port_name`; when none is ready,
/// serving-but-terminating ones. Returns the endpoints and the total count.
fn endpoints_from_slices(
    slices: &[&EndpointSlice],
    port_name: Option<&str>,
) -> (Vec<Endpoint>, u32) {
    let mut ready = BTreeSet::new();
    let mut serving = BTreeSet::new();
    let mut all = BTreeSet::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let port = slice.ports.as_ref().and_then(|ps| {
            ps.iter()
                .find(|p| p.name.as_deref().filter(|n| !n.is_empty()) == port_name)
                .and_then(|p| p.port)
        });
        let Some(port) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.as_ref();
            // Unset `ready` means ready (API convention for EndpointSlices).
            let is_ready = c.and_then(|c| c.ready).unwrap_or(true);
            let is_serving = c.and_then(|c| c.serving).unwrap_or(is_ready);
            for addr in &ep.addresses {
                let e = Endpoint {
                    host: addr.clone(),
                    port,
                    weight: 1,
                    ready: true,
                };
                all.insert((addr.clone(), port));
                if is_ready {
                    ready.insert(e);
                } else if is_serving {
                    serving.insert(Endpoint { ready: false, ..e });
                }
            }
        }
    }
    let chosen = if ready.is_empty() { serving } else { ready };
    (chosen.into_iter().collect(), all.len() as u32)
}

/// Reference for diagnostics about an Upstream.
pub(crate) fn object_ref(up: &Upstream) -> ObjectRef {
    ObjectRef::new(
        Kind::Upstream,
        up.metadata.namespace.as_deref().unwrap_or("default"),
        up.metadata.name.as_deref().unwrap_or(""),
    )
}

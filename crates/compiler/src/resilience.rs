//! An Upstream's `loadBalancer.hashOn`, `retries`, `healthCheck` and `circuitBreaker`
//! lowered into the table's typed values (`gatehouse_table::resilience`), defaults
//! applied. A value out of range is reported on its field and makes the Upstream
//! invalid (the CRD's own bounds catch most of them before they get here).

use gatehouse_api::upstream::{LoadBalancerPolicy, UpstreamSpec};
use gatehouse_table::resilience::{
    ActiveCheck, CircuitBreaker, HashOn, HealthCheck, PassiveCheck, Retries, RetryOn,
};

use crate::upstream::Durations;
use crate::values::is_token;

/// `hashOn`, for RingHash and Maglev; reported when it is missing for them or set for
/// another balancer.
pub(crate) fn hash_on(spec: &UpstreamSpec, d: &mut Durations<'_, '_>) -> Option<HashOn> {
    let lb = spec.load_balancer.as_ref()?;
    let hashing = matches!(
        lb.policy.unwrap_or_default(),
        LoadBalancerPolicy::RingHash | LoadBalancerPolicy::Maglev
    );
    let Some(h) = &lb.hash_on else {
        if hashing {
            d.fail(
                "spec.loadBalancer.hashOn",
                "RingHash and Maglev need hashOn (header, cookie, queryParam or clientIp)".into(),
            );
        }
        return None;
    };
    if !hashing {
        d.fail(
            "spec.loadBalancer.hashOn",
            "hashOn applies only to RingHash and Maglev".into(),
        );
        return None;
    }
    let keys = [
        h.header
            .as_ref()
            .map(|v| ("header", HashOn::Header(v.to_ascii_lowercase()))),
        h.cookie
            .as_ref()
            .map(|v| ("cookie", HashOn::Cookie(v.clone()))),
        h.query_param
            .as_ref()
            .map(|v| ("queryParam", HashOn::QueryParam(v.clone()))),
        (h.client_ip == Some(true)).then_some(("clientIp", HashOn::ClientIp)),
    ];
    let mut set = keys.into_iter().flatten();
    let (Some((field, key)), None) = (set.next(), set.next()) else {
        d.fail(
            "spec.loadBalancer.hashOn",
            "exactly one of header, cookie, queryParam or clientIp".into(),
        );
        return None;
    };
    let name = match &key {
        HashOn::Header(n) | HashOn::Cookie(n) | HashOn::QueryParam(n) => n.as_str(),
        HashOn::ClientIp => return Some(key),
    };
    if !is_token(name) {
        d.fail(
            &format!("spec.loadBalancer.hashOn.{field}"),
            format!("{name:?} is not a valid name"),
        );
        return None;
    }
    Some(key)
}

/// `retries`, defaults applied.
pub(crate) fn retries(spec: &UpstreamSpec, d: &mut Durations<'_, '_>) -> Option<Retries> {
    let r = spec.retries.as_deref()?;
    let backoff = r.backoff.as_ref();
    let base = d.ms(
        "spec.retries.backoff.base",
        backoff.and_then(|b| b.base.as_ref()),
        25,
    );
    let max = d.ms(
        "spec.retries.backoff.max",
        backoff.and_then(|b| b.max.as_ref()),
        250.max(base),
    );
    if base > max {
        d.fail(
            "spec.retries.backoff",
            format!("base ({base}ms) exceeds max ({max}ms)"),
        );
    }
    let per_try = r
        .per_try_timeout
        .as_ref()
        .map(|t| d.ms("spec.retries.perTryTimeout", Some(t), 1));
    let attempts = r.attempts.unwrap_or(0);
    if attempts > 10 {
        d.fail(
            "spec.retries.attempts",
            format!("{attempts} is more than 10"),
        );
    }
    let budget = r.budget.as_ref();
    let percent = budget.and_then(|b| b.percent).unwrap_or(20);
    if percent > 100 {
        d.fail(
            "spec.retries.budget.percent",
            format!("{percent} is more than 100"),
        );
    }
    let mut on = r.on.clone().map_or_else(
        || {
            vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::GatewayError,
            ]
        },
        |list| {
            list.iter()
                .map(|o| match o {
                    gatehouse_api::upstream::RetryOn::ConnectFailure => RetryOn::ConnectFailure,
                    gatehouse_api::upstream::RetryOn::Reset => RetryOn::Reset,
                    gatehouse_api::upstream::RetryOn::GatewayError => RetryOn::GatewayError,
                    gatehouse_api::upstream::RetryOn::ServerError => RetryOn::ServerError,
                })
                .collect()
        },
    );
    on.sort();
    on.dedup();
    let mut status_codes = r.status_codes.clone().unwrap_or_default();
    for code in &status_codes {
        if !(100..=599).contains(code) {
            d.fail(
                "spec.retries.statusCodes",
                format!("{code} is not an HTTP status"),
            );
        }
    }
    status_codes.sort_unstable();
    status_codes.dedup();
    Some(Retries {
        attempts,
        on,
        status_codes,
        per_try_timeout_ms: per_try,
        backoff_base_ms: base,
        backoff_max_ms: max,
        budget_percent: percent,
        budget_min_per_second: budget.and_then(|b| b.min_per_second).unwrap_or(10),
        idempotent_only: r.idempotent_only.unwrap_or(true),
    })
}

/// `healthCheck`, defaults applied.
pub(crate) fn health_check(spec: &UpstreamSpec, d: &mut Durations<'_, '_>) -> Option<HealthCheck> {
    let h = spec.health_check.as_deref()?;
    let active = h.active.as_ref().map(|a| {
        if !a.path.starts_with('/') || a.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            d.fail(
                "spec.healthCheck.active.path",
                format!("{:?} is not an absolute path without spaces", a.path),
            );
        }
        let mut expected = a.expected_statuses.clone().unwrap_or_else(|| vec![200]);
        if expected.is_empty() || expected.iter().any(|s| !(100..=599).contains(s)) {
            d.fail(
                "spec.healthCheck.active.expectedStatuses",
                "must name HTTP statuses (100..599)".into(),
            );
        }
        expected.sort_unstable();
        expected.dedup();
        let healthy = a.healthy_threshold.unwrap_or(2);
        let unhealthy = a.unhealthy_threshold.unwrap_or(3);
        if healthy == 0 || unhealthy == 0 {
            d.fail(
                "spec.healthCheck.active",
                "thresholds must be at least 1".into(),
            );
        }
        ActiveCheck {
            path: a.path.clone(),
            interval_ms: d.ms(
                "spec.healthCheck.active.interval",
                a.interval.as_ref(),
                5_000,
            ),
            timeout_ms: d.ms("spec.healthCheck.active.timeout", a.timeout.as_ref(), 1_000),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            expected_statuses: expected,
        }
    });
    let passive = h.passive.as_ref().map(|p| {
        let percent = p.max_ejection_percent.unwrap_or(50);
        if percent > 100 {
            d.fail(
                "spec.healthCheck.passive.maxEjectionPercent",
                format!("{percent} is more than 100"),
            );
        }
        let failures = p.consecutive_failures.unwrap_or(5);
        if failures == 0 {
            d.fail(
                "spec.healthCheck.passive.consecutiveFailures",
                "must be at least 1".into(),
            );
        }
        PassiveCheck {
            consecutive_failures: failures,
            ejection_time_ms: d.ms(
                "spec.healthCheck.passive.ejectionTime",
                p.ejection_time.as_ref(),
                30_000,
            ),
            max_ejection_percent: percent.min(100),
        }
    });
    Some(HealthCheck { active, passive })
}

/// `circuitBreaker`, defaults applied.
pub(crate) fn circuit_breaker(
    spec: &UpstreamSpec,
    d: &mut Durations<'_, '_>,
) -> Option<CircuitBreaker> {
    let c = spec.circuit_breaker.as_deref()?;
    let ratio = c.failure_ratio.unwrap_or(0.5);
    if !(ratio > 0.0 && ratio <= 1.0) {
        d.fail(
            "spec.circuitBreaker.failureRatio",
            format!("{ratio} is not greater than 0 and at most 1"),
        );
    }
    let at_least_one = |d: &mut Durations<'_, '_>, field: &str, v: Option<u32>, default: u32| {
        let v = v.unwrap_or(default);
        if v == 0 {
            d.fail(field, "must be at least 1".into());
        }
        v
    };
    Some(CircuitBreaker {
        max_connections: at_least_one(
            d,
            "spec.circuitBreaker.maxConnections",
            c.max_connections,
            1024,
        ),
        max_pending_requests: c.max_pending_requests.unwrap_or(1024),
        max_concurrent_requests: at_least_one(
            d,
            "spec.circuitBreaker.maxConcurrentRequests",
            c.max_concurrent_requests,
            1024,
        ),
        // Clamped so that a refused value still lowers to something in range.
        failure_ratio_ppm: (ratio.clamp(0.0, 1.0) * 1_000_000.0).round() as u32,
        minimum_requests: at_least_one(
            d,
            "spec.circuitBreaker.minimumRequests",
            c.minimum_requests,
            20,
        ),
        window_ms: d.ms("spec.circuitBreaker.window", c.window.as_ref(), 10_000),
        open_duration_ms: d.ms(
            "spec.circuitBreaker.openDuration",
            c.open_duration.as_ref(),
            30_000,
        ),
        half_open_requests: at_least_one(
            d,
            "spec.circuitBreaker.halfOpenRequests",
            c.half_open_requests,
            1,
        ),
    })
}

//! `policy::global_limit` against a real `redis-server` on a loopback port: each test
//! starts its own server (killed on drop). Without `redis-server` installed the tests
//! skip, unless `GATEHOUSE_REQUIRE_REDIS` is set (CI), where they fail.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gatehouse_proxy::policy::global_limit::{Decision, GlobalError, GlobalLimiter, Limit};

const TIMEOUT: Duration = Duration::from_millis(500);

type Redis = gatehouse_testkit::redis::RedisServer;

/// A plain (synchronous) connection for inspecting the server.
fn raw(redis: &Redis) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .expect("raw connection")
}

/// A limiter that is connected (the connection is made in the background).
async fn limiter(redis: &Redis, prefix: &str) -> GlobalLimiter {
    let limiter = GlobalLimiter::new(&redis.url(), prefix).expect("valid URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !limiter.is_connected() {
        assert!(Instant::now() < deadline, "limiter did not connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    limiter
}

fn per(requests: u64, secs: u64) -> Limit {
    Limit {
        requests,
        period: Duration::from_secs(secs),
    }
}

async fn check(l: &GlobalLimiter, key: &str, limits: &[Limit], max_delay: Duration) -> Decision {
    l.check(key, limits, max_delay, TIMEOUT)
        .await
        .expect("Redis answers")
}

#[tokio::test]
async fn allows_exactly_the_limit_then_rejects() {
    let Some(redis) = Redis::start() else { return };
    let l = limiter(&redis, "t1:").await;
    let limits = [per(5, 60)];
    for i in 0..5u64 {
        match check(&l, "route\0rule\x00192.0.2.1", &limits, Duration::ZERO).await {
            Decision::Allowed { wait, quota } => {
                assert_eq!(wait, Duration::ZERO);
                assert_eq!(quota.limit, 5);
                assert_eq!(quota.remaining, 4 - i);
                // Full capacity again once every spent slot (12 s each) is restored.
                let full = Duration::from_secs(12 * (i + 1));
                assert!(quota.reset <= full && quota.reset > full - Duration::from_secs(5));
            }
            other => panic!("request {i}: {other:?}"),
        }
    }
    match check(&l, "route\0rule\x00192.0.2.1", &limits, Duration::ZERO).await {
        Decision::Rejected { retry_after, quota } => {
            // One slot comes back 12 s after the burst.
            assert!(retry_after > Duration::from_secs(7) && retry_after <= Duration::from_secs(12));
            assert_eq!(quota.limit, 5);
            assert_eq!(quota.remaining, 0);
            assert!(quota.reset > Duration::from_secs(55));
        }
        other => panic!("6th request: {other:?}"),
    }
    // Another client has its own budget.
    assert!(matches!(
        check(&l, "route\0rule\x00192.0.2.2", &limits, Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
    // The script cache is flushed (e.g. a failover): EVALSHA falls back to EVAL.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut raw(&redis))
        .expect("SCRIPT FLUSH");
    assert!(matches!(
        check(&l, "route\0rule\x00192.0.2.1", &limits, Duration::ZERO).await,
        Decision::Rejected { .. }
    ));
    assert!(matches!(
        check(&l, "route\0rule\x00192.0.2.3", &limits, Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
}

#[test]
fn replicas_on_different_runtimes_share_one_budget() {
    let Some(redis) = Redis::start() else { return };
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    // Replica A (used from two worker threads, each with its own runtime) and replica B.
    let a = runtime().block_on(limiter(&redis, "t2:"));
    let b = runtime().block_on(limiter(&redis, "t2:"));
    let barrier = Arc::new(Barrier::new(3));
    let workers: Vec<_> = [a.clone(), a, b]
        .into_iter()
        .map(|l| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                barrier.wait();
                rt.block_on(async {
                    let mut allowed = 0;
                    for _ in 0..10 {
                        match check(&l, "shared", &[per(10, 60)], Duration::ZERO).await {
                            Decision::Allowed { .. } => allowed += 1,
                            Decision::Rejected { .. } => {}
                        }
                    }
                    allowed
                })
            })
        })
        .collect();
    let total: u32 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert_eq!(total, 10);
}

#[tokio::test]
async fn a_rejecting_limit_charges_no_other() {
    let Some(redis) = Redis::start() else { return };
    let l = limiter(&redis, "t3:").await;
    let both = [per(100, 60), per(3, 60)];
    for _ in 0..3 {
        assert!(matches!(
            check(&l, "k", &both, Duration::ZERO).await,
            Decision::Allowed { .. }
        ));
    }
    for _ in 0..5 {
        match check(&l, "k", &both, Duration::ZERO).await {
            Decision::Rejected { quota, .. } => {
                // The most restrictive limit is reported.
                assert_eq!((quota.limit, quota.remaining), (3, 0));
            }
            other => panic!("{other:?}"),
        }
    }
    // The first limit was charged 3 times, not 8: this 4th charge leaves 96.
    match check(&l, "k", &both[..1], Duration::ZERO).await {
        Decision::Allowed { quota, .. } => {
            assert_eq!((quota.limit, quota.remaining), (100, 96))
        }
        other => panic!("{other:?}"),
    }
    // And a rejection by the FIRST limit does not charge the second either.
    let tight_first = [per(1, 60), per(50, 60)];
    assert!(matches!(
        check(&l, "j", &tight_first, Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
    for _ in 0..3 {
        assert!(matches!(
            check(&l, "j", &tight_first, Duration::ZERO).await,
            Decision::Rejected { .. }
        ));
    }
    match check(&l, "j", &tight_first[1..], Duration::ZERO).await {
        Decision::Allowed { quota, .. } => assert_eq!(quota.remaining, 48),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn delay_mode_reserves_increasing_waits() {
    let Some(redis) = Redis::start() else { return };
    let l = limiter(&redis, "t4:").await;
    // 2 per 60 s: one slot every 30 s after the burst of 2.
    let limits = [per(2, 60)];
    let max_delay = Duration::from_secs(70);
    for _ in 0..2 {
        match check(&l, "d", &limits, max_delay).await {
            Decision::Allowed { wait, .. } => assert_eq!(wait, Duration::ZERO),
            other => panic!("{other:?}"),
        }
    }
    // Two concurrent callers over the rate: both reserved, 30 s apart.
    let (x, y) = tokio::join!(
        check(&l, "d", &limits, max_delay),
        check(&l, "d", &limits, max_delay)
    );
    let wait_of = |o: Decision| match o {
        Decision::Allowed { wait, quota } => {
            assert_eq!(quota.remaining, 0);
            wait
        }
        other => panic!("{other:?}"),
    };
    let (mut w1, mut w2) = (wait_of(x), wait_of(y));
    if w1 > w2 {
        std::mem::swap(&mut w1, &mut w2);
    }
    assert!(
        w1 > Duration::from_secs(25) && w1 <= Duration::from_secs(30),
        "{w1:?}"
    );
    assert!(
        w2 > Duration::from_secs(55) && w2 <= Duration::from_secs(60),
        "{w2:?}"
    );
    let gap = w2 - w1;
    assert!(
        gap > Duration::from_secs(29) && gap <= Duration::from_secs(31),
        "{gap:?}"
    );
    // The next one would wait ~90 s > 70 s: rejected, and nothing reserved.
    for _ in 0..3 {
        match check(&l, "d", &limits, max_delay).await {
            Decision::Rejected { retry_after, .. } => {
                assert!(retry_after > max_delay && retry_after <= Duration::from_secs(90));
            }
            other => panic!("{other:?}"),
        }
    }
    // A larger bound still gets the 3rd reserved slot (~90 s), not a later one.
    match check(&l, "d", &limits, Duration::from_secs(200)).await {
        Decision::Allowed { wait, .. } => {
            assert!(
                wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
                "{wait:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fails_fast_while_redis_is_down_and_recovers() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let l = limiter(&redis, "t5:").await;
    let limits = [per(1000, 60)];
    let timeout = Duration::from_millis(100);
    assert!(l.check("k", &limits, Duration::ZERO, timeout).await.is_ok());

    redis.stop();
    for i in 0..10 {
        let started = Instant::now();
        let result = l.check("k", &limits, Duration::ZERO, timeout).await;
        let took = started.elapsed();
        assert!(
            matches!(
                result,
                Err(GlobalError::Unavailable(_) | GlobalError::Timeout)
            ),
            "check {i} while down: {result:?}"
        );
        assert!(took < Duration::from_secs(2), "check {i} took {took:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A limiter created while Redis is down fails fast too.
    let late = GlobalLimiter::new(&redis.url(), "t5:").expect("valid URL");
    let started = Instant::now();
    assert!(
        late.check("k", &limits, Duration::ZERO, timeout)
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Same port, fresh server: both limiters recover without being recreated.
    redis.restart();
    for l in [&l, &late] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match l.check("k", &limits, Duration::ZERO, timeout).await {
                Ok(Decision::Allowed { .. }) => break,
                other => {
                    assert!(Instant::now() < deadline, "no recovery: {other:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn keys_expire_and_bad_data_is_an_error() {
    let Some(redis) = Redis::start() else { return };
    let l = limiter(&redis, "t6:").await;
    let mut raw = raw(&redis);
    assert!(matches!(
        check(&l, "a{b}%c", &[per(5, 60), per(100, 3600)], Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("t6:*")
        .query(&mut raw)
        .expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            b"t6:{a%7Bb%7D%25c}:100:3600000000".to_vec(),
            b"t6:{a%7Bb%7D%25c}:5:60000000".to_vec(),
        ]
    );
    // The TTL is the time until the limit is full again: one slot (12 s, 36 s).
    for (key, slot_ms) in keys.iter().zip([36_000i64, 12_000]) {
        let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut raw).expect("PTTL");
        assert!(
            pttl > slot_ms - 5_000 && pttl <= slot_ms,
            "{pttl} for {key:?}"
        );
    }
    // A short limit's key vanishes on its own.
    let short = [Limit {
        requests: 10,
        period: Duration::from_millis(100),
    }];
    assert!(matches!(
        check(&l, "short", &short, Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: i64 = redis::cmd("EXISTS")
            .arg("t6:{short}:10:100000")
            .query(&mut raw)
            .expect("EXISTS");
        if n == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the key did not expire");
        std::thread::park_timeout(Duration::from_millis(20));
    }

    // A non-number is treated as absent; a key of the wrong type is an error, not a panic.
    let _: () = redis::cmd("SET")
        .arg("t6:{junk}:5:60000000")
        .arg("not a number")
        .query(&mut raw)
        .expect("SET");
    match check(&l, "junk", &[per(5, 60)], Duration::ZERO).await {
        Decision::Allowed { quota, .. } => assert_eq!(quota.remaining, 4),
        other => panic!("{other:?}"),
    }
    let _: () = redis::cmd("HSET")
        .arg("t6:{hash}:5:60000000")
        .arg("f")
        .arg("v")
        .query(&mut raw)
        .expect("HSET");
    let result = l
        .check("hash", &[per(5, 60)], Duration::ZERO, TIMEOUT)
        .await;
    assert!(matches!(result, Err(GlobalError::Redis(_))), "{result:?}");
    // Invalid limits are refused before any I/O.
    let result = l.check("k", &[], Duration::ZERO, TIMEOUT).await;
    assert!(
        matches!(result, Err(GlobalError::InvalidLimits(_))),
        "{result:?}"
    );
    // The connection survived the errors.
    assert!(matches!(
        check(&l, "after", &[per(5, 60)], Duration::ZERO).await,
        Decision::Allowed { .. }
    ));
}

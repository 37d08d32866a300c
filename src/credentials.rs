//! AWS credentials: aws-config's default chain (environment, profile files, web identity,
//! container, IMDS) on the proxy's own hyper/rustls/ring stack, behind a cache.
//!
//! `SdkConfig::credentials_provider()` does not cache: every call would fetch again (an IMDS or
//! STS round trip per request). [`CredentialCache`] fetches once, serves every request from
//! memory, refreshes ahead of expiry in the background with a single fetch, keeps using
//! credentials that are still valid while the source is down (retrying with backoff), and
//! replaces credentials the endpoint rejected ([`CredentialCache::replace_rejected`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::region::Region;
use aws_types::SdkConfig;

use crate::config::AssumeRole;
use crate::error::{error_chain, ProxyError};
use crate::signing::Clock;

/// Loads the AWS SDK configuration (credential chain, region) for an optional profile.
pub async fn load_sdk_config(profile: Option<&str>, region: Option<&str>) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client);
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// aws-config's default credential chain, with everything after its first source loaded only
/// when that source has nothing.
///
/// The chain asks the environment (`AWS_ACCESS_KEY_ID`, ...) first, whatever the profile. Only
/// when the environment has no credentials is the rest of the SDK configuration loaded (profile
/// files, the HTTPS client with the system CA store, the SSO/STS clients and their endpoint
/// rules) and its chain asked, once loaded, from then on. With credentials in the environment
/// none of that is built: start-up is quicker and less of the executable is paged in (idle RSS
/// 9.9 -> 9.2 MiB, measured before release builds laid out their code, see build.rs).
/// `profile` and `region` are what [`load_sdk_config`] would get.
pub fn default_chain(profile: Option<String>, region: Option<String>) -> SharedCredentialsProvider {
    let rest = LoadedOnFirstUse {
        profile,
        region,
        chain: tokio::sync::OnceCell::new(),
    };
    SharedCredentialsProvider::new(
        CredentialsProviderChain::first_try(
            "Environment",
            EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("DefaultChain", rest),
    )
}

/// The SDK configuration's credential chain, loaded when first asked.
#[derive(Debug)]
struct LoadedOnFirstUse {
    profile: Option<String>,
    region: Option<String>,
    chain: tokio::sync::OnceCell<Option<SharedCredentialsProvider>>,
}

impl ProvideCredentials for LoadedOnFirstUse {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    load_sdk_config(self.profile.as_deref(), self.region.as_deref())
                        .await
                        .credentials_provider()
                })
                .await;
            match chain {
                Some(chain) => chain.provide_credentials().await,
                None => Err(CredentialsError::not_loaded(
                    "the AWS configuration has no credentials provider",
                )),
            }
        })
    }
}

/// The role in `role`, assumed with the credentials `base` provides (uncached: the assume-role
/// provider asks it only when it calls STS). STS is reached through the SDK configuration's
/// HTTP client and endpoint settings (`AWS_ENDPOINT_URL_STS` included).
pub async fn assume_role(
    role: &AssumeRole,
    sdk: &SdkConfig,
    base: SharedCredentialsProvider,
) -> SharedCredentialsProvider {
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.arn.clone())
        .configure(sdk)
        .session_name(role.session_name.clone());
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id.clone());
    }
    if let Some(duration) = role.duration {
        builder = builder.session_length(duration);
    }
    SharedCredentialsProvider::new(builder.build_from_provider(base).await)
}

/// Longest time before expiry at which a refresh starts (the AWS SDKs use the same).
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Credentials are not used during the last part of their life (at most this long), so a
/// request signed just before expiry does not arrive after it.
const MAX_EXPIRY_BUFFER: Duration = Duration::from_secs(5);
/// First wait after a failed refresh while the current credentials are still valid; doubles on
/// each failure up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Retries never come closer together than this.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(250);
/// With no usable credentials, requests within this long of a failed fetch get its error at once
/// instead of asking the source again.
const FOREGROUND_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The endpoint rejecting a key fetched less than this long ago does not fetch again.
const MIN_REJECTION_REFETCH: Duration = Duration::from_secs(1);
/// A fetch that takes longer than this counts as failed (aws-config's providers have their own,
/// shorter timeouts; this only bounds a hung source).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Caches credentials from any provider; cheap to clone.
///
/// - Requests are served from memory; the provider is asked once however many wait.
/// - Refreshes start ahead of expiry (half the lifetime, at most five minutes before) and run in
///   the background while the current credentials are still usable: no request waits for them.
/// - A failed refresh keeps the current credentials and is retried with backoff (0.5 s doubling
///   to 30 s, closer together as expiry nears), never on every request.
/// - Only when no usable credentials are left does a request wait for a fetch, and only when
///   that fails does it get a 503 saying what failed.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SharedCredentialsProvider,
    clock: Arc<Clock>,
    state: Mutex<State>,
    /// Held for the duration of every fetch: single flight.
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// Consecutive failed fetches.
    failures: u32,
    last_failure: Option<(SystemTime, String)>,
    last_success: Option<SystemTime>,
    background: bool,
}

#[derive(Clone)]
struct Cached {
    /// Shared: cloning `Credentials` itself copies its property map (several allocations),
    /// which every request would pay.
    credentials: Arc<Credentials>,
    /// When to start refreshing in the background.
    refresh_at: Option<SystemTime>,
    /// After this the credentials are not used: requests wait for a fetch.
    usable_until: Option<SystemTime>,
}

enum Lookup {
    Fresh(Arc<Credentials>),
    /// Usable but due: serve and refresh in the background.
    Due(Arc<Credentials>),
    /// Nothing usable and the source failed moments ago.
    RecentlyFailed(String),
    Fetch,
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache::with_clock(provider, Arc::new(Clock::default()))
    }

    /// A cache that judges expiry by `clock` (corrected for the endpoint's clock).
    pub fn with_clock(provider: SharedCredentialsProvider, clock: Arc<Clock>) -> CredentialCache {
        CredentialCache {
            inner: Arc::new(Inner {
                provider,
                clock,
                state: Mutex::new(State::default()),
                refresh: tokio::sync::Mutex::new(()),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// The clock expiry is judged by; the signer uses it too.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.inner.clock
    }

    /// How many times the underlying provider was asked.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Credentials usable now. Waits for the provider only when nothing usable is cached.
    pub async fn get(&self) -> Result<Arc<Credentials>, ProxyError> {
        match self.lookup() {
            Lookup::Fresh(c) => return Ok(c),
            Lookup::Due(c) => {
                self.refresh_in_background();
                return Ok(c);
            }
            Lookup::RecentlyFailed(reason) => return Err(no_credentials(&reason)),
            Lookup::Fetch => {}
        }
        let _single_flight = self.inner.refresh.lock().await;
        match self.lookup() {
            Lookup::Fresh(c) | Lookup::Due(c) => Ok(c),
            Lookup::RecentlyFailed(reason) => Err(no_credentials(&reason)),
            Lookup::Fetch => self.fetch().await,
        }
    }

    /// The endpoint rejected `rejected` as expired or invalid: unless the cache already holds
    /// other credentials (another request got there first), drops them and fetches new ones.
    pub async fn replace_rejected(
        &self,
        rejected: &Credentials,
    ) -> Result<Arc<Credentials>, ProxyError> {
        let _single_flight = self.inner.refresh.lock().await;
        {
            let state = self.state();
            let now = self.inner.clock.now();
            if let Some(c) = &state.current {
                let same = same_key(&c.credentials, rejected);
                let just_fetched = state.last_success.is_some_and(|t| {
                    now.duration_since(t).unwrap_or_default() < MIN_REJECTION_REFETCH
                });
                if !same || just_fetched {
                    return Ok(c.credentials.clone());
                }
            }
        }
        tracing::info!(
            access_key_id = %key_id_tail(rejected.access_key_id()),
            "the endpoint rejected the credentials as expired or invalid; fetching new ones"
        );
        let fetched = self.fetch().await;
        if fetched.is_err() {
            self.state().current = None;
        }
        fetched
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self) -> Lookup {
        let now = self.inner.clock.now();
        let state = self.state();
        if let Some(c) = &state.current {
            if c.usable_until.is_none_or(|t| now < t) {
                if c.refresh_at.is_none_or(|t| now < t) {
                    return Lookup::Fresh(c.credentials.clone());
                }
                return Lookup::Due(c.credentials.clone());
            }
        }
        match &state.last_failure {
            Some((at, reason))
                if now.duration_since(*at).unwrap_or_default() < FOREGROUND_RETRY_DELAY =>
            {
                Lookup::RecentlyFailed(reason.clone())
            }
            _ => Lookup::Fetch,
        }
    }

    /// Starts one background refresh unless one is running or the last failure asks to wait.
    fn refresh_in_background(&self) {
        let now = self.inner.clock.now();
        {
            let mut state = self.state();
            if state.background {
                return;
            }
            if let (Some((failed_at, _)), Some(c)) = (&state.last_failure, &state.current) {
                let remaining = c
                    .usable_until
                    .and_then(|t| t.duration_since(now).ok())
                    .unwrap_or(MAX_RETRY_DELAY);
                if now < *failed_at + retry_delay(state.failures, remaining) {
                    return;
                }
            }
            state.background = true;
        }
        let cache = self.clone();
        tokio::spawn(async move {
            {
                let _single_flight = cache.inner.refresh.lock().await;
                // A request may have fetched while this task waited for the lock.
                if matches!(cache.lookup(), Lookup::Due(_)) {
                    let _ = cache.fetch().await;
                }
            }
            cache.state().background = false;
        });
    }

    /// Asks the provider; the caller holds the single-flight lock.
    async fn fetch(&self) -> Result<Arc<Credentials>, ProxyError> {
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let fetched =
            tokio::time::timeout(FETCH_TIMEOUT, self.inner.provider.provide_credentials()).await;
        let now = self.inner.clock.now();
        let reason = match fetched {
            Ok(Ok(credentials)) => {
                let credentials = Arc::new(credentials);
                self.store(&credentials, now);
                return Ok(credentials);
            }
            Ok(Err(err)) => error_chain(&err),
            Err(_) => format!(
                "the credential source did not answer within {}",
                humantime::format_duration(FETCH_TIMEOUT)
            ),
        };
        let mut state = self.state();
        state.failures += 1;
        state.last_failure = Some((now, reason.clone()));
        match &state.current {
            Some(c) if c.usable_until.is_none_or(|t| now < t) => {
                tracing::warn!(
                    cause = %reason,
                    failures = state.failures,
                    access_key_id = %key_id_tail(c.credentials.access_key_id()),
                    usable_until = %c.usable_until.map(rfc3339).unwrap_or_else(|| "never".into()),
                    "credential refresh failed; still using the current credentials and retrying with backoff"
                );
            }
            _ => {
                tracing::warn!(cause = %reason, failures = state.failures, "cannot load AWS credentials")
            }
        }
        Err(no_credentials(&reason))
    }

    fn store(&self, credentials: &Arc<Credentials>, now: SystemTime) {
        let (refresh_at, usable_until) = schedule(credentials.expiry(), now);
        let mut state = self.state();
        let unchanged = state.current.as_ref().is_some_and(|c| {
            same_key(&c.credentials, credentials) && c.credentials.expiry() == credentials.expiry()
        });
        if unchanged {
            tracing::debug!(
                access_key_id = %key_id_tail(credentials.access_key_id()),
                next_refresh = %refresh_at.map(rfc3339).unwrap_or_else(|| "never".into()),
                "credential source returned the same credentials"
            );
        } else {
            tracing::info!(
                source = %provider_name(credentials),
                access_key_id = %key_id_tail(credentials.access_key_id()),
                expires = %credentials.expiry().map(rfc3339).unwrap_or_else(|| "never".into()),
                next_refresh = %refresh_at.map(rfc3339).unwrap_or_else(|| "never".into()),
                "credentials loaded"
            );
        }
        state.current = Some(Cached {
            credentials: credentials.clone(),
            refresh_at,
            usable_until,
        });
        state.failures = 0;
        state.last_failure = None;
        state.last_success = Some(now);
    }
}

/// When to refresh and until when to use credentials expiring at `expiry`, fetched at `now`.
/// Credentials returned unchanged by a source that has not rotated yet are refreshed again at
/// half their remaining life, so such re-fetches stay logarithmic in number.
fn schedule(
    expiry: Option<SystemTime>,
    now: SystemTime,
) -> (Option<SystemTime>, Option<SystemTime>) {
    let Some(expiry) = expiry else {
        return (None, None);
    };
    let lifetime = expiry.duration_since(now).unwrap_or_default();
    let buffer = (lifetime / 20).min(MAX_EXPIRY_BUFFER);
    let margin = (lifetime / 2).min(MAX_REFRESH_MARGIN);
    let refresh_at = (expiry - margin).max(now + MIN_RETRY_DELAY);
    (Some(refresh_at), Some(expiry - buffer))
}

/// Wait after the `failures`-th failure: exponential, at most 30 s, and at most a quarter of the
/// usable time left so a source that comes back shortly before expiry is still caught.
fn retry_delay(failures: u32, remaining: Duration) -> Duration {
    let exponential = FIRST_RETRY_DELAY.saturating_mul(1 << failures.saturating_sub(1).min(10));
    exponential
        .min(MAX_RETRY_DELAY)
        .min(remaining / 4)
        .max(MIN_RETRY_DELAY)
}

/// Same access key and session token.
pub fn same_key(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id() == b.access_key_id() && a.session_token() == b.session_token()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn no_credentials(reason: &str) -> ProxyError {
    ProxyError::NoCredentials(format!(
        "no usable AWS credentials: {reason}. Tried the default chain (environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
         the shared config and credentials files with AWS_PROFILE or --profile, web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), \
         container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI/RELATIVE_URI) and EC2 instance metadata); configure one of them \
         or fix the one that failed"
    ))
}

/// The name of the provider that produced the credentials (`EnvironmentVariable`, `ProfileFile`,
/// `WebIdentityToken`, `EcsContainer`, `IMDSv2`, …). aws-credential-types keeps it private and
/// shows it only in its (secret-redacting) `Debug` output.
pub fn provider_name(credentials: &Credentials) -> String {
    let debug = format!("{credentials:?}");
    debug
        .split_once("provider_name: \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `…WXYZ`: enough of an access key id to tell keys apart in logs, never the whole id.
pub fn key_id_tail(key_id: &str) -> String {
    let tail: String = key_id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{error::CredentialsError, future};

    /// A scripted answer: a key with a lifetime, or a failure.
    type Answer = Result<(&'static str, Option<Duration>), ()>;

    /// Each call takes the next scripted answer (the last one repeats), after `delay`.
    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicU64,
        delay: Mutex<Duration>,
        next: Mutex<Vec<Answer>>,
    }

    impl Scripted {
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
        fn then(&self, answers: Vec<Answer>) {
            *self.next.lock().unwrap() = answers;
        }
    }

    #[derive(Debug)]
    struct Shared(Arc<Scripted>);

    impl ProvideCredentials for Shared {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let next = {
                let mut next = self.0.next.lock().unwrap();
                if next.len() > 1 {
                    next.remove(0)
                } else {
                    next[0]
                }
            };
            let delay = *self.0.delay.lock().unwrap();
            future::ProvideCredentials::new(async move {
                tokio::time::sleep(delay).await;
                match next {
                    Ok((key, ttl)) => Ok(Credentials::new(
                        key,
                        "secret",
                        None,
                        ttl.map(|t| SystemTime::now() + t),
                        "scripted",
                    )),
                    Err(()) => Err(CredentialsError::not_loaded("scripted failure")),
                }
            })
        }
    }

    fn cache(script: Vec<Answer>) -> (CredentialCache, Arc<Scripted>) {
        let p = Arc::new(Scripted {
            next: Mutex::new(script),
            ..Default::default()
        });
        (
            CredentialCache::new(SharedCredentialsProvider::new(Shared(p.clone()))),
            p,
        )
    }

    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));

    async fn key(cache: &CredentialCache) -> String {
        cache.get().await.unwrap().access_key_id().to_string()
    }

    #[tokio::test]
    async fn one_fetch_serves_many_concurrent_requests() {
        let (cache, p) = cache(vec![Ok(("AKIA1", HOUR))]);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().access_key_id(), "AKIA1");
        }
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test]
    async fn refreshes_ahead_in_the_background_without_making_requests_wait() {
        // Lifetime 2 s → refresh due at 1 s. The refresh takes 600 ms; requests meanwhile get
        // the current key at once.
        let (cache, p) = cache(vec![
            Ok(("OLD", Some(Duration::from_secs(2)))),
            Ok(("NEW", HOUR)),
        ]);
        assert_eq!(key(&cache).await, "OLD");
        *p.delay.lock().unwrap() = Duration::from_millis(600);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            assert_eq!(key(&cache).await, "OLD");
            assert!(started.elapsed() < Duration::from_millis(100));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(key(&cache).await, "NEW");
        assert_eq!(
            p.calls(),
            2,
            "one background refresh for all those requests"
        );
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_current_key_and_backs_off() {
        // Lifetime 4 s → due at 2 s, usable until 3.8 s. The source is down: requests every 5 ms
        // for a second keep getting OLD, and the source is asked a few times (retries tighten
        // towards a 250 ms floor as expiry nears), not 200.
        let (cache, p) = cache(vec![Ok(("OLD", Some(Duration::from_secs(4)))), Err(())]);
        assert_eq!(key(&cache).await, "OLD");
        tokio::time::sleep(Duration::from_millis(2050)).await;
        for _ in 0..200 {
            assert_eq!(key(&cache).await, "OLD");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let calls = p.calls();
        assert!((3..=8).contains(&calls), "{calls} fetches");
        p.then(vec![Ok(("NEW", HOUR))]);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while key(&cache).await != "NEW" {
            assert!(std::time::Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn expired_with_the_source_down_is_a_503_without_hammering_then_recovers() {
        let (cache, p) = cache(vec![Ok(("OLD", Some(Duration::from_millis(400)))), Err(())]);
        assert_eq!(key(&cache).await, "OLD");
        tokio::time::sleep(Duration::from_millis(450)).await;
        let err = cache.get().await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("scripted failure"), "{err}");
        let calls = p.calls();
        for _ in 0..50 {
            assert!(cache.get().await.is_err());
        }
        assert_eq!(
            p.calls(),
            calls,
            "a failure moments ago is not retried per request"
        );
        p.then(vec![Ok(("NEW", HOUR))]);
        tokio::time::sleep(FOREGROUND_RETRY_DELAY).await;
        assert_eq!(key(&cache).await, "NEW");
    }

    #[tokio::test]
    async fn a_rejected_key_is_replaced_once_for_all_requests_that_saw_it() {
        let (cache, p) = cache(vec![Ok(("OLD", HOUR)), Ok(("NEW", HOUR))]);
        let old = cache.get().await.unwrap();
        tokio::time::sleep(MIN_REJECTION_REFETCH).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (c, old) = (cache.clone(), old.clone());
                tokio::spawn(async move { c.replace_rejected(&old).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().access_key_id(), "NEW");
        }
        assert_eq!(p.calls(), 2);
        // The endpoint rejecting a key fetched a moment ago does not fetch again.
        let new = cache.get().await.unwrap();
        assert_eq!(
            cache.replace_rejected(&new).await.unwrap().access_key_id(),
            "NEW"
        );
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test]
    async fn no_credentials_is_a_503_that_says_what_to_do() {
        let (cache, _) = cache(vec![Err(())]);
        let err = cache.get().await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"));
    }

    #[test]
    fn schedule_refreshes_at_half_life_at_most_five_minutes_ahead() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = Duration::from_secs;
        let (refresh, usable) = schedule(Some(now + secs(3600)), now);
        assert_eq!(refresh, Some(now + secs(3300)));
        assert_eq!(usable, Some(now + secs(3595)));
        let (refresh, usable) = schedule(Some(now + secs(16)), now);
        assert_eq!(refresh, Some(now + secs(8)));
        assert_eq!(usable, Some(now + Duration::from_millis(15_200)));
        assert_eq!(schedule(None, now), (None, None));
        // Already expired: due again after the minimum delay, unusable.
        let (refresh, usable) = schedule(Some(now), now);
        assert_eq!(refresh, Some(now + MIN_RETRY_DELAY));
        assert_eq!(usable, Some(now));
    }

    #[test]
    fn retry_delay_doubles_and_tightens_near_expiry() {
        let long = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, long), Duration::from_millis(500));
        assert_eq!(retry_delay(2, long), Duration::from_secs(1));
        assert_eq!(retry_delay(4, long), Duration::from_secs(4));
        assert_eq!(retry_delay(40, long), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(40, Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(retry_delay(40, Duration::ZERO), MIN_RETRY_DELAY);
    }

    #[test]
    fn provider_name_is_read_without_the_secret() {
        let c = Credentials::new("AKIA", "SECRET", None, None, "ProfileFile");
        assert_eq!(provider_name(&c), "ProfileFile");
    }

    #[test]
    fn key_tail_shows_four_characters() {
        assert_eq!(key_id_tail("AKIAIOSFODNN7EXAMPLE"), "…MPLE");
        assert_eq!(key_id_tail("AB"), "…AB");
    }
}

//! AWS credentials: aws-config's default chain (environment, profile files, web identity,
//! container, IMDS) on the proxy's own hyper/rustls/ring stack, behind a cache.
//!
//! `SdkConfig::credentials_provider()` does not cache: every call would fetch again (an IMDS or
//! STS round trip per request). [`CredentialCache`] fetches once, serves every request from
//! memory, refreshes ahead of expiry with a single fetch however many requests are waiting, and
//! keeps using credentials that are still valid when a refresh fails.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_types::region::Region;
use aws_types::SdkConfig;

use crate::error::ProxyError;

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

/// Longest time before expiry at which a refresh starts.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Caches credentials from any provider; cheap to clone.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    /// When to start refreshing: a quarter of the lifetime (at most five minutes) before expiry,
    /// so credentials valid for a few seconds are still used for most of their life.
    refresh_at: Option<SystemTime>,
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> CredentialCache {
        CredentialCache {
            inner: Arc::new(Inner {
                provider,
                current: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                fetches: Default::default(),
            }),
        }
    }

    /// How many times the underlying provider was asked.
    pub fn fetch_count(&self) -> u64 {
        self.inner
            .fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Credentials valid now, fetching them when none are cached or the cached ones are due.
    pub async fn get(&self) -> Result<Credentials, ProxyError> {
        let now = SystemTime::now();
        if let Some(c) = self.cached() {
            if c.refresh_at.is_none_or(|t| now < t) {
                return Ok(c.credentials);
            }
        }
        let _single_flight = self.inner.refresh.lock().await;
        let now = SystemTime::now();
        let cached = self.cached();
        if let Some(c) = &cached {
            if c.refresh_at.is_none_or(|t| now < t) {
                return Ok(c.credentials.clone());
            }
        }
        match self.fetch().await {
            Ok(fresh) => Ok(fresh),
            Err(err) => match cached {
                Some(c) if c.credentials.expiry().is_none_or(|e| now < e) => {
                    tracing::warn!(cause = %err, "credential refresh failed; still using the current credentials until they expire");
                    Ok(c.credentials)
                }
                _ => Err(err),
            },
        }
    }

    /// Drops the cached credentials (the endpoint said they are expired or invalid).
    pub fn invalidate(&self) {
        if let Ok(mut guard) = self.inner.current.write() {
            *guard = None;
        }
    }

    fn cached(&self) -> Option<Cached> {
        self.inner.current.read().ok().and_then(|g| g.clone())
    }

    async fn fetch(&self) -> Result<Credentials, ProxyError> {
        self.inner
            .fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let credentials = self.inner.provider.provide_credentials().await.map_err(|e| {
            ProxyError::NoCredentials(format!(
                "no AWS credentials: {}. Tried the default chain (environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 the shared config and credentials files with AWS_PROFILE or --profile, web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), \
                 container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI/RELATIVE_URI) and EC2 instance metadata); configure one of them",
                error_chain(&e)
            ))
        })?;
        let now = SystemTime::now();
        let refresh_at = credentials.expiry().map(|expiry| {
            let lifetime = expiry.duration_since(now).unwrap_or_default();
            let margin = (lifetime / 4).min(MAX_REFRESH_MARGIN);
            expiry - margin
        });
        tracing::info!(
            source = %provider_name(&credentials),
            access_key_id = %key_id_tail(credentials.access_key_id()),
            expires = %credentials.expiry().map(|e| humantime::format_rfc3339_seconds(e).to_string()).unwrap_or_else(|| "never".into()),
            "credentials loaded"
        );
        if let Ok(mut guard) = self.inner.current.write() {
            *guard = Some(Cached {
                credentials: credentials.clone(),
                refresh_at,
            });
        }
        Ok(credentials)
    }
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

/// `outer: inner: root` for any error with sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{error::CredentialsError, future};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// Each call takes the next scripted answer: a key with a lifetime, or a failure.
    type Script = Vec<Result<(String, Option<Duration>), ()>>;

    #[derive(Debug, Default)]
    struct Scripted {
        calls: AtomicU64,
        next: Mutex<Script>,
    }

    #[derive(Debug)]
    struct Shared(Arc<Scripted>);

    impl ProvideCredentials for Shared {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.0.next.lock().unwrap().remove(0);
            future::ProvideCredentials::ready(match next {
                Ok((key, ttl)) => Ok(Credentials::new(
                    key,
                    "secret",
                    None,
                    ttl.map(|t| SystemTime::now() + t),
                    "scripted",
                )),
                Err(()) => Err(CredentialsError::not_loaded("scripted failure")),
            })
        }
    }

    fn cache(script: Script) -> (CredentialCache, Arc<Scripted>) {
        let p = Arc::new(Scripted {
            next: Mutex::new(script),
            ..Default::default()
        });
        (
            CredentialCache::new(SharedCredentialsProvider::new(Shared(p.clone()))),
            p,
        )
    }

    #[tokio::test]
    async fn one_fetch_serves_many_concurrent_requests() {
        let (cache, p) = cache(vec![Ok(("AKIA1".into(), Some(Duration::from_secs(3600))))]);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().access_key_id(), "AKIA1");
        }
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_ahead_of_expiry_and_keeps_valid_keys_when_refresh_fails() {
        // Lifetime 2 s → refresh margin 0.5 s: at 1.6 s it is due; the refresh fails, the old key
        // is still valid and served; the next success replaces it.
        let (cache, p) = cache(vec![
            Ok(("OLD".into(), Some(Duration::from_secs(2)))),
            Err(()),
            Ok(("NEW".into(), Some(Duration::from_secs(3600)))),
        ]);
        assert_eq!(cache.get().await.unwrap().access_key_id(), "OLD");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "OLD");
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert_eq!(cache.get().await.unwrap().access_key_id(), "OLD");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "NEW");
        assert_eq!(p.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_credentials_is_a_503_that_says_what_to_do() {
        let (cache, _) = cache(vec![Err(())]);
        let err = cache.get().await.unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"));
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

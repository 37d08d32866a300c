//! Credentials end to end: the real binary, its environment pointed at fake sources on loopback,
//! every source of aws-config's default chain, `--role-arn`, rotation races, clock skew, and a
//! load test with a rotating, flaky container endpoint. The upstream accepts exactly the keys
//! the fakes issued, so a request only succeeds when the right credentials arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fakes::{FakeContainer, FakeImds, FakeSso, FakeSts, Issued};
use crate::support::http::{get, Resp};
use crate::support::proxy::upstream_args;
use crate::support::{Creds, ProxyProcess, TestUpstream};

const STATIC_KEY: &str = "AKIASTATICEXAMPLE7Q2X";
const STATIC_SECRET: &str = "static/SECRET/wJalrXUtnFEMIK7MDENGbPxRf";

/// An upstream accepting only `creds` (or nothing until a fake issues something).
async fn upstream(creds: &[Creds]) -> Arc<TestUpstream> {
    let mut builder = TestUpstream::builder().service("es").region("us-east-1");
    for c in creds {
        builder = builder.creds(c.clone());
    }
    Arc::new(builder.start().await)
}

/// A callback that makes `up` accept whatever a fake issues.
fn accept(up: &Arc<TestUpstream>) -> impl Fn(&Issued) + Send + Sync + 'static {
    let up = up.clone();
    move |issued| up.add_creds(issued.creds.clone())
}

/// Like [`accept`], and the upstream rejects the token as expired once its expiration passes.
fn accept_until_expiry(up: &Arc<TestUpstream>) -> impl Fn(&Issued) + Send + Sync + 'static {
    let up = up.clone();
    move |issued| {
        up.add_creds(issued.creds.clone());
        let (up, issued) = (up.clone(), issued.clone());
        tokio::spawn(async move {
            let left = issued
                .expiration
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            tokio::time::sleep(left).await;
            up.expire_token(issued.token());
        });
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A throw-away home with `~/.aws/config` and `~/.aws/credentials`; its variables point the
/// SDK at these files only.
struct AwsHome {
    dir: tempfile::TempDir,
}

impl AwsHome {
    fn new(config: &str, credentials: &str) -> AwsHome {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/config"), config).unwrap();
        std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
        AwsHome { dir }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    fn env(&self) -> Vec<(String, String)> {
        env(&[
            ("HOME", &self.path("")),
            ("AWS_CONFIG_FILE", &self.path(".aws/config")),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                &self.path(".aws/credentials"),
            ),
        ])
    }
}

async fn start(up: &TestUpstream, extra_args: &[&str], env: &[(String, String)]) -> ProxyProcess {
    let mut args = upstream_args(up);
    args.extend(extra_args.iter().map(|s| s.to_string()));
    ProxyProcess::start(&args, env).await
}

/// A request through the proxy that must have reached the upstream with valid credentials.
async fn assert_signed_ok(proxy: &ProxyProcess, up: &TestUpstream) -> Resp {
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(
        resp.status,
        200,
        "{}\nproxy log:\n{}",
        resp.text(),
        proxy.stderr()
    );
    assert!(up.last_request().unwrap().verified());
    resp
}

fn signed_key(up: &TestUpstream) -> String {
    let auth = up
        .last_request()
        .unwrap()
        .header("authorization")
        .unwrap()
        .to_string();
    let at = auth.find("Credential=").unwrap() + "Credential=".len();
    auth[at..].split('/').next().unwrap().to_string()
}

async fn assert_logged_source(proxy: &ProxyProcess, source: &str, key: &str) {
    let logs = proxy.settled_stderr().await;
    let tail = &key[key.len() - 4..];
    assert!(
        logs.lines().any(|l| l.contains("credentials loaded")
            && l.contains(source)
            && l.contains(&format!("…{tail}"))
            && l.contains("expires=")),
        "a start-up line names source {source}, key …{tail} and the expiry:\n{logs}"
    );
}

async fn assert_no_secrets(proxy: &ProxyProcess, secrets: &[&str]) {
    let logs = proxy.settled_stderr().await;
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret),
            "`{secret}` leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test]
async fn environment_keys_without_a_session_token() {
    let up = upstream(&[Creds::new(STATIC_KEY, STATIC_SECRET)]).await;
    let proxy = start(
        &up,
        &[],
        &env(&[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(
        up.last_request().unwrap().header("x-amz-security-token"),
        None
    );
    assert_logged_source(&proxy, "EnvironmentVariable", STATIC_KEY).await;
    assert!(proxy.settled_stderr().await.contains("expires=never"));
}

#[tokio::test]
async fn profile_with_static_keys_by_flag_and_by_aws_profile() {
    let up = upstream(&[Creds::new(STATIC_KEY, STATIC_SECRET)]).await;
    let home = AwsHome::new(
        "[default]\nregion = eu-west-1\n[profile work]\nregion = us-east-1\n",
        &format!(
            "[default]\naws_access_key_id = AKIADEFAULTWRONG0000\naws_secret_access_key = nope\n\
             [work]\naws_access_key_id = {STATIC_KEY}\naws_secret_access_key = {STATIC_SECRET}\n"
        ),
    );
    let by_flag = start(&up, &["--profile", "work"], &home.env()).await;
    assert_signed_ok(&by_flag, &up).await;
    assert_logged_source(&by_flag, "ProfileFile", STATIC_KEY).await;
    let mut by_env = home.env();
    by_env.push(("AWS_PROFILE".into(), "work".into()));
    let by_env = start(&up, &[], &by_env).await;
    assert_signed_ok(&by_env, &up).await;
    // And SIGV4_PROXY_PROFILE, the flag's own variable.
    let mut by_var = home.env();
    by_var.push(("SIGV4_PROXY_PROFILE".into(), "work".into()));
    let by_var = start(&up, &[], &by_var).await;
    assert_signed_ok(&by_var, &up).await;
    assert_no_secrets(&by_flag, &[STATIC_SECRET]).await;
}

/// The proxy asks the environment before it loads anything else of the SDK configuration; the
/// order stays the SDK's: environment keys win over a profile, even one named by `--profile`,
/// and a half-set environment (no secret) falls through to the profile.
#[tokio::test]
async fn environment_keys_come_before_the_profile_as_in_the_sdk_chain() {
    let up = upstream(&[Creds::new(STATIC_KEY, STATIC_SECRET)]).await;
    let home = AwsHome::new(
        "[profile work]\nregion = us-east-1\n",
        "[default]\naws_access_key_id = AKIADEFAULTWRONG0000\naws_secret_access_key = nope\n\
         [work]\naws_access_key_id = AKIAWORKWRONG0000000\naws_secret_access_key = nope\n",
    );
    let mut both = home.env();
    both.extend(env(&[
        ("AWS_ACCESS_KEY_ID", STATIC_KEY),
        ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
    ]));
    for args in [&[][..], &["--profile", "work"][..]] {
        let proxy = start(&up, args, &both).await;
        assert_signed_ok(&proxy, &up).await;
        assert_eq!(signed_key(&up), STATIC_KEY);
        assert_logged_source(&proxy, "EnvironmentVariable", STATIC_KEY).await;
    }

    let right = AwsHome::new(
        "",
        &format!("[default]\naws_access_key_id = {STATIC_KEY}\naws_secret_access_key = {STATIC_SECRET}\n"),
    );
    let mut half = right.env();
    half.extend(env(&[("AWS_ACCESS_KEY_ID", "AKIAHALFSETWRONG0000")]));
    let proxy = start(&up, &[], &half).await;
    assert_signed_ok(&proxy, &up).await;
    assert_logged_source(&proxy, "ProfileFile", STATIC_KEY).await;
}

#[tokio::test]
async fn profile_role_arn_with_source_profile_assumes_the_role_with_the_source_keys() {
    let up = upstream(&[]).await;
    let sts = FakeSts::start().await;
    sts.on_issue(accept(&up));
    let home = AwsHome::new(
        "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/search-reader\n\
         source_profile = base\nrole_session_name = laptop-session\n",
        &format!(
            "[base]\naws_access_key_id = {STATIC_KEY}\naws_secret_access_key = {STATIC_SECRET}\n"
        ),
    );
    let mut env = home.env();
    env.push(("AWS_ENDPOINT_URL_STS".into(), sts.http.url()));
    let proxy = start(&up, &["--profile", "app"], &env).await;
    assert_signed_ok(&proxy, &up).await;
    let calls = sts.calls();
    assert_eq!(
        calls.len(),
        1,
        "one AssumeRole for start-up and the request"
    );
    assert_eq!(calls[0].param("Action").as_deref(), Some("AssumeRole"));
    assert_eq!(
        calls[0].param("RoleArn").as_deref(),
        Some("arn:aws:iam::123456789012:role/search-reader")
    );
    assert_eq!(
        calls[0].param("RoleSessionName").as_deref(),
        Some("laptop-session")
    );
    assert_eq!(
        calls[0].signed_by().as_deref(),
        Some(STATIC_KEY),
        "signed with the source profile"
    );
    assert_eq!(signed_key(&up), "ASIASTS00000001");
    assert_logged_source(&proxy, "AssumeRoleProvider", "ASIASTS00000001").await;
}

#[tokio::test]
async fn profile_credential_process() {
    let up = upstream(&[]).await;
    let issued = Creds::with_token(
        "ASIAPROCESS000000042",
        "process-secret-xyz",
        "process-token-abc",
    );
    up.add_creds(issued.clone());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("creds.sh");
    let expiration =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\", \"SessionToken\": \"{}\", \"Expiration\": \"{expiration}\"}}'\n",
            issued.access_key, issued.secret, issued.token.as_deref().unwrap()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let home = AwsHome::new(
        &format!(
            "[profile proc]\ncredential_process = {}\n",
            script.display()
        ),
        "",
    );
    let mut env = home.env();
    env.push(("AWS_PROFILE".into(), "proc".into()));
    let proxy = start(&up, &["-vv"], &env).await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), issued.access_key);
    assert_logged_source(&proxy, "CredentialProcess", &issued.access_key).await;
    assert_no_secrets(&proxy, &[&issued.secret, issued.token.as_deref().unwrap()]).await;
}

#[tokio::test]
async fn web_identity_token_file_as_irsa_sets_it() {
    let up = upstream(&[]).await;
    let sts = FakeSts::start().await;
    sts.on_issue(accept(&up));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.fake-projected-sa-token.sig",
    )
    .unwrap();
    let proxy = start(
        &up,
        &["-vv"],
        &env(&[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                &token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa-search"),
            ("AWS_ROLE_SESSION_NAME", "pod-abc"),
            ("AWS_ENDPOINT_URL_STS", &sts.http.url()),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    let calls = sts.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].param("Action").as_deref(),
        Some("AssumeRoleWithWebIdentity")
    );
    assert_eq!(
        calls[0].param("WebIdentityToken").as_deref(),
        Some("eyJhbGciOiJSUzI1NiJ9.fake-projected-sa-token.sig")
    );
    assert_eq!(
        calls[0].param("RoleArn").as_deref(),
        Some("arn:aws:iam::123456789012:role/irsa-search")
    );
    assert_eq!(
        calls[0].param("RoleSessionName").as_deref(),
        Some("pod-abc")
    );
    assert_logged_source(&proxy, "WebIdentityToken", "ASIASTS00000001").await;
    assert_no_secrets(
        &proxy,
        &[
            "sts-secret-1-wJalrXUtnFEMIK7MDENGbPxRfiCY",
            "sts-session-token-1-IQoJb3JpZ2luX2Vj",
            "fake-projected-sa-token",
        ],
    )
    .await;
}

#[tokio::test]
async fn container_credentials_with_a_token_as_ecs_sets_them() {
    let up = upstream(&[]).await;
    let container = FakeContainer::start("ecs-auth-token-123").await;
    container.on_issue(accept(&up));
    let proxy = start(
        &up,
        &[],
        &env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &container.full_uri()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth-token-123"),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), "ASIACTR00000001");
    assert_logged_source(&proxy, "EcsContainer", "ASIACTR00000001").await;
    assert_eq!(container.fetches(), 1);
}

#[tokio::test]
async fn container_credentials_with_a_token_file_as_eks_pod_identity_sets_them() {
    let up = upstream(&[]).await;
    let container = FakeContainer::start("eks-pod-identity-token-xyz").await;
    container.on_issue(accept(&up));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "eks-pod-identity-token-xyz").unwrap();
    let proxy = start(
        &up,
        &["-vv"],
        &env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &container.full_uri()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                &token_file.display().to_string(),
            ),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(
        container.http.requests()[0].header("authorization"),
        Some("eks-pod-identity-token-xyz")
    );
    assert_logged_source(&proxy, "EcsContainer", "ASIACTR00000001").await;
    assert_no_secrets(
        &proxy,
        &[
            "ctr-secret-1-wJalrXUtnFEMIK7MDENGbPxRfiCY",
            "ctr-session-token-1-IQoJb3JpZ2luX2Vj",
        ],
    )
    .await;
}

#[tokio::test]
async fn imds_v2_instance_profile() {
    let up = upstream(&[]).await;
    let imds = FakeImds::start().await;
    imds.on_issue(accept(&up));
    let proxy = start(
        &up,
        &[],
        &env(&[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.endpoint()),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), "ASIAIMD00000001");
    assert_logged_source(&proxy, "IMDSv2", "ASIAIMD00000001").await;
    let token_put = &imds.http.requests()[0];
    assert_eq!(
        (token_put.method.as_str(), token_put.path()),
        ("PUT", "/latest/api/token")
    );
}

/// `--profile dev` from `config`, with what `aws sso login` leaves behind for it:
/// `~/.aws/sso/cache/<sha1(cache_key)>.json` (the start URL in the legacy form, the session
/// name in the `sso_session` form). The role credentials come from the fake SSO portal.
async fn assert_sso_profile_signs(config: &str, cache_key: &str, start_url: &str) {
    let up = upstream(&[]).await;
    let sso = FakeSso::start("sso-portal-access-token-abc").await;
    sso.on_issue(accept(&up));
    let home = AwsHome::new(config, "");
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        cache_key.as_bytes(),
    );
    std::fs::create_dir_all(home.path(".aws/sso/cache")).unwrap();
    let expires =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600));
    std::fs::write(
        home.path(&format!(".aws/sso/cache/{}.json", hex::encode(digest.as_ref()))),
        format!(
            r#"{{"accessToken":"sso-portal-access-token-abc","expiresAt":"{expires}","region":"us-east-1","startUrl":"{start_url}"}}"#
        ),
    )
    .unwrap();
    let mut env = home.env();
    env.push(("AWS_ENDPOINT_URL_SSO".into(), sso.http.url()));
    let proxy = start(&up, &["--profile", "dev"], &env).await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), "ASIASSO00000001");
    let call = &sso.http.requests()[0];
    assert_eq!(call.param("role_name").as_deref(), Some("SearchReader"));
    assert_eq!(call.param("account_id").as_deref(), Some("123456789012"));
    assert_logged_source(&proxy, "SSO", "ASIASSO00000001").await;
}

#[tokio::test]
async fn sso_profile_with_a_cached_login() {
    let start_url = "https://d-1234567890.awsapps.com/start";
    let config = format!(
        "[profile dev]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\
         sso_account_id = 123456789012\nsso_role_name = SearchReader\n"
    );
    assert_sso_profile_signs(&config, start_url, start_url).await;
}

#[tokio::test]
async fn sso_session_profile_with_a_cached_login() {
    let start_url = "https://d-1234567890.awsapps.com/start";
    let config = format!(
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = SearchReader\n\n\
         [sso-session corp]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\
         sso_registration_scopes = sso:account:access\n"
    );
    assert_sso_profile_signs(&config, "corp", start_url).await;
}

#[tokio::test]
async fn role_arn_flag_assumes_the_role_on_top_of_the_chain() {
    let up = upstream(&[]).await;
    let sts = FakeSts::start().await;
    sts.on_issue(accept(&up));
    let proxy = start(
        &up,
        &[
            "--role-arn",
            "arn:aws:iam::210987654321:role/cross-account-search",
            "--role-session-name",
            "sigv4-proxy-test",
            "--external-id",
            "ext-7731",
            "--role-duration",
            "20m",
        ],
        &env(&[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
            ("AWS_ENDPOINT_URL_STS", &sts.http.url()),
        ]),
    )
    .await;
    assert_signed_ok(&proxy, &up).await;
    let calls = sts.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.param("Action").as_deref(), Some("AssumeRole"));
    assert_eq!(
        call.param("RoleArn").as_deref(),
        Some("arn:aws:iam::210987654321:role/cross-account-search")
    );
    assert_eq!(
        call.param("RoleSessionName").as_deref(),
        Some("sigv4-proxy-test")
    );
    assert_eq!(call.param("ExternalId").as_deref(), Some("ext-7731"));
    assert_eq!(call.param("DurationSeconds").as_deref(), Some("1200"));
    assert_eq!(
        call.signed_by().as_deref(),
        Some(STATIC_KEY),
        "the chain's keys sign AssumeRole"
    );
    assert_eq!(signed_key(&up), "ASIASTS00000001");
    assert_logged_source(&proxy, "AssumeRoleProvider", "ASIASTS00000001").await;
}

#[tokio::test]
async fn an_assumed_role_is_refreshed_before_it_expires() {
    let up = upstream(&[]).await;
    let sts = FakeSts::start().await;
    sts.on_issue(accept_until_expiry(&up));
    sts.set_lifetime(Duration::from_secs(4));
    let proxy = start(
        &up,
        &["--role-arn", "arn:aws:iam::123456789012:role/short"],
        &env(&[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
            ("AWS_ENDPOINT_URL_STS", &sts.http.url()),
        ]),
    )
    .await;
    // Each key is valid 4 s; the upstream stops accepting it then.
    let mut keys = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        assert_signed_ok(&proxy, &up).await;
        let key = signed_key(&up);
        if keys.last() != Some(&key) {
            keys.push(key);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(keys.len() >= 3, "refreshed every ~2 s: {keys:?}");
    let calls = sts.calls().len();
    assert!(
        calls <= keys.len() + 2,
        "{calls} AssumeRole calls for {} keys",
        keys.len()
    );
}

fn container_env(container: &FakeContainer, token: &str) -> Vec<(String, String)> {
    env(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &container.full_uri()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", token),
    ])
}

#[tokio::test]
async fn a_token_the_endpoint_calls_expired_is_replaced_and_the_request_retried_once() {
    let up = upstream(&[]).await;
    let container = FakeContainer::start("t").await;
    container.on_issue(accept(&up));
    let proxy = start(&up, &[], &container_env(&container, "t")).await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), "ASIACTR00000001");
    // Rotation race: the source has moved on and the endpoint already refuses the old token,
    // while the proxy still thinks it is valid for an hour.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    container.rotate();
    up.expire_token("ctr-session-token-1-IQoJb3JpZ2luX2Vj");
    let before = up.request_count();
    let resp = assert_signed_ok(&proxy, &up).await;
    assert!(resp.header("x-sigv4-proxy-error").is_none());
    let seen = up.requests();
    assert_eq!(seen.len() - before, 2, "one rejected attempt, one retry");
    assert!(!seen[before].verified());
    assert_eq!(signed_key(&up), "ASIACTR00000002");
    assert_eq!(container.fetches(), 2);
    assert!(proxy
        .settled_stderr()
        .await
        .contains("rejected the credentials as expired or invalid"));
}

#[tokio::test]
async fn a_signature_mismatch_or_a_key_the_source_keeps_returning_is_passed_through() {
    // The endpoint knows the key with another secret: "signature does not match", no retry.
    let up = upstream(&[Creds::new(STATIC_KEY, "a-different-secret")]).await;
    let env = env(&[
        ("AWS_ACCESS_KEY_ID", STATIC_KEY),
        ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
    ]);
    let proxy = start(&up, &[], &env).await;
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.text()
            .contains("signature we calculated does not match"),
        "{}",
        resp.text()
    );
    assert!(
        resp.header("x-sigv4-proxy-error").is_none(),
        "the endpoint's answer, unchanged"
    );
    assert_eq!(up.request_count(), 1);
    // An unknown key: "invalid"; the source returns the same key again, so no retry either.
    up.revoke_key(STATIC_KEY);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.text()
            .contains("security token included in the request is invalid"),
        "{}",
        resp.text()
    );
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn clock_skew_is_learned_from_the_endpoint_and_kept_both_ways() {
    for offset in [900i64, -900] {
        let up = upstream(&[Creds::new(STATIC_KEY, STATIC_SECRET)]).await;
        up.set_clock_offset_secs(offset);
        let env = env(&[
            ("AWS_ACCESS_KEY_ID", STATIC_KEY),
            ("AWS_SECRET_ACCESS_KEY", STATIC_SECRET),
        ]);
        let proxy = start(&up, &[], &env).await;
        assert_signed_ok(&proxy, &up).await;
        let seen = up.requests();
        assert_eq!(
            seen.len(),
            2,
            "rejected for the time, then signed with the endpoint's time"
        );
        assert!(!seen[0].verified());
        // Later requests use the learned offset straight away.
        assert_signed_ok(&proxy, &up).await;
        assert_signed_ok(&proxy, &up).await;
        assert_eq!(up.request_count(), 4);
        let logs = proxy.settled_stderr().await;
        assert!(
            logs.contains("clock is off"),
            "a hint about the machine's clock:\n{logs}"
        );
        // `Date` has whole seconds: the learned offset is 15 minutes give or take one second.
        let sign = if offset > 0 { '+' } else { '-' };
        assert!(
            logs.contains(&format!("offset={sign}15m"))
                || logs.contains(&format!("offset={sign}14m 59s")),
            "{logs}"
        );
    }
}

#[tokio::test]
async fn no_credentials_at_all_is_a_503_that_says_what_to_do() {
    let up = upstream(&[]).await;
    let proxy = start(&up, &[], &[]).await;
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(resp.status, 503);
    assert_eq!(
        resp.header("x-sigv4-proxy-error"),
        Some("credentials_unavailable_exception")
    );
    let reason = resp.json()["error"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("AWS_ACCESS_KEY_ID")
            && reason.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "{reason}"
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn with_the_source_down_requests_succeed_until_expiry_then_get_503_until_it_is_back() {
    let up = upstream(&[]).await;
    let container = FakeContainer::start("t").await;
    container.on_issue(accept_until_expiry(&up));
    // Valid for 3 to 4 s (the expiration has whole seconds).
    container.set_lifetime(Duration::from_secs(4));
    let proxy = start(&up, &[], &container_env(&container, "t")).await;
    container.set_down(true);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        assert_signed_ok(&proxy, &up).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fetches_while_down = container.fetches();
    assert!(
        fetches_while_down <= 12,
        "{fetches_while_down} fetches: backoff, not one per request"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let resp = get(proxy.addr, "/_cluster/health").await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    let reason = resp.json()["error"]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("500"), "says what failed: {reason}");
    container.set_down(false);
    container.rotate();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_signed_ok(&proxy, &up).await;
    assert_eq!(signed_key(&up), "ASIACTR00000002");
}

/// 8 clients for 30 s while the container endpoint issues a new key every 8 s (each valid 16 s,
/// and refused by the upstream after that) and is down from 15 s to 18 s: not one request may
/// fail, and the credential fetches stay in the tens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_rotation_and_an_outage_loses_no_request() {
    const RUN: Duration = Duration::from_secs(30);
    const ROTATE_EVERY: Duration = Duration::from_secs(8);
    let up = upstream(&[]).await;
    let container = Arc::new(FakeContainer::start("load-token").await);
    container.on_issue(accept_until_expiry(&up));
    container.set_lifetime(ROTATE_EVERY * 2);
    container.rotate();
    let proxy = start(&up, &[], &container_env(&container, "load-token")).await;
    let started = Instant::now();
    let rotation = {
        let container = container.clone();
        tokio::spawn(async move {
            let mut next = started + ROTATE_EVERY;
            let (down_at, up_at) = (
                started + Duration::from_secs(15),
                started + Duration::from_secs(18),
            );
            let (mut down, mut fetches_at) = (false, Vec::new());
            while started.elapsed() < RUN {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if Instant::now() >= next {
                    container.rotate();
                    next += ROTATE_EVERY;
                }
                let should_be_down = Instant::now() >= down_at && Instant::now() < up_at;
                if should_be_down != down {
                    container.set_down(should_be_down);
                    down = should_be_down;
                    fetches_at.push(container.fetches());
                }
            }
            fetches_at
        })
    };
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = proxy.addr;
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, Vec::new());
                while started.elapsed() < RUN {
                    let resp = get(addr, "/_cluster/health").await;
                    if resp.status == 200 {
                        ok += 1;
                    } else {
                        failed.push(format!("{} {}", resp.status, resp.text()));
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = tokio::time::timeout(RUN + Duration::from_secs(30), c)
            .await
            .unwrap()
            .unwrap();
        ok += o;
        failed.extend(f);
    }
    let fetches_at = rotation.await.unwrap();
    let seen = up.requests();
    let rejected = seen.iter().filter(|r| !r.verified()).count();
    let mut keys: Vec<String> = seen
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .map(|a| {
            a.split("Credential=")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    let fetches = container.fetches();
    eprintln!(
        "load: {ok} requests ok, {} failed, {} upstream requests ({rejected} rejected and retried), \
         {fetches} credential fetches ({} while the source was down), keys used: {keys:?}",
        failed.len(),
        seen.len(),
        fetches_at[1] - fetches_at[0],
    );
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}\n{}",
        failed.len(),
        &failed[..failed.len().min(3)],
        proxy.stderr()
    );
    assert!(ok > 300, "only {ok} requests in 30 s");
    assert!(keys.len() >= 4, "the keys rotated: {keys:?}");
    assert!((4..60).contains(&fetches), "{fetches} credential fetches");
    assert!(
        fetches_at[1] > fetches_at[0],
        "the outage hit a refresh: {fetches_at:?}"
    );
}

/// Makes `up` accept whatever a fake issues and keeps it, to look for it in the logs later.
fn accept_and_keep(
    up: &Arc<TestUpstream>,
    kept: &Arc<std::sync::Mutex<Vec<Issued>>>,
) -> impl Fn(&Issued) + Send + Sync + 'static {
    let (up, kept) = (up.clone(), kept.clone());
    move |issued| {
        up.add_creds(issued.creds.clone());
        kept.lock().unwrap().push(issued.clone());
    }
}

/// Runs the binary at `-vv` with `RUST_LOG` unset (trace level, as a user gets it), sends
/// requests carrying a client's Basic credentials, and checks that none of `secrets`, the
/// client's password (plain or base64) or the signatures the endpoint received is in the log.
async fn assert_secrets_stay_out_of_vv_logs(
    up: &TestUpstream,
    extra_args: &[&str],
    env: &[(String, String)],
    secrets: impl Fn() -> Vec<String>,
) {
    use base64::Engine as _;
    let mut args = upstream_args(up);
    args.extend(extra_args.iter().map(|s| s.to_string()));
    args.push("-vv".into());
    let mut proxy = ProxyProcess::start_without_rust_log(&args, env).await;
    let password = "client-pa55word-Zq9";
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("reader:{password}"));
    let basic = format!("Basic {encoded}");
    for (method, path, body) in [
        ("GET", "/_cluster/health", ""),
        ("POST", "/logs/_search", "{\"query\":{\"match_all\":{}}}"),
    ] {
        let resp = crate::support::http::send(
            proxy.addr,
            method,
            path,
            &[
                ("authorization", &basic),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        )
        .await;
        assert_eq!(resp.status, 200, "{}\n{}", resp.text(), proxy.stderr());
    }
    assert!(proxy.terminate().await.success());
    let logs = proxy.stderr();
    assert!(
        logs.contains(" TRACE "),
        "-vv without RUST_LOG logs at trace level:\n{logs}"
    );
    let mut secrets = secrets();
    secrets.extend([password.to_string(), encoded]);
    for r in up.requests() {
        let auth = r.header("authorization").expect("signed").to_string();
        let signature = auth.rsplit("Signature=").next().unwrap().to_string();
        assert_eq!(signature.len(), 64, "{auth}");
        secrets.push(signature);
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secrets(&proxy, &refs).await;
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_vv_without_rust_log() {
    // Environment keys with a session token.
    let creds = Creds::with_token(
        "ASIAVVENV0000001",
        STATIC_SECRET,
        "vv-env-session-token-IQoJ",
    );
    let up = upstream(std::slice::from_ref(&creds)).await;
    let keys = env(&[
        ("AWS_ACCESS_KEY_ID", &creds.access_key),
        ("AWS_SECRET_ACCESS_KEY", &creds.secret),
        ("AWS_SESSION_TOKEN", creds.token.as_deref().unwrap()),
    ]);
    let env_secrets = || {
        vec![
            STATIC_SECRET.to_string(),
            "vv-env-session-token-IQoJ".to_string(),
        ]
    };
    assert_secrets_stay_out_of_vv_logs(&up, &[], &keys, env_secrets).await;

    // A profile that assumes a role (fake STS) with a source profile's keys.
    let up = upstream(&[]).await;
    let issued = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sts = FakeSts::start().await;
    sts.on_issue(accept_and_keep(&up, &issued));
    let home = AwsHome::new(
        "[profile app]\nrole_arn = arn:aws:iam::123456789012:role/search-reader\nsource_profile = base\n",
        &format!(
            "[base]\naws_access_key_id = {STATIC_KEY}\naws_secret_access_key = {STATIC_SECRET}\n"
        ),
    );
    let mut role_env = home.env();
    role_env.push(("AWS_ENDPOINT_URL_STS".into(), sts.http.url()));
    let kept = issued.clone();
    let issued_secrets = move || {
        let mut s = vec![STATIC_SECRET.to_string()];
        for i in kept.lock().unwrap().iter() {
            s.extend([i.creds.secret.clone(), i.token().to_string()]);
        }
        assert!(s.len() > 1, "the fake issued credentials");
        s
    };
    assert_secrets_stay_out_of_vv_logs(&up, &["--profile", "app"], &role_env, issued_secrets).await;

    // Container credentials with an authorization token.
    let up = upstream(&[]).await;
    let issued = Arc::new(std::sync::Mutex::new(Vec::new()));
    let container = FakeContainer::start("container-auth-token-7f3e9a1c").await;
    container.on_issue(accept_and_keep(&up, &issued));
    let kept = issued.clone();
    let container_secrets = move || {
        let mut s = vec!["container-auth-token-7f3e9a1c".to_string()];
        for i in kept.lock().unwrap().iter() {
            s.extend([i.creds.secret.clone(), i.token().to_string()]);
        }
        assert!(s.len() > 1, "the fake issued credentials");
        s
    };
    let env = container_env(&container, "container-auth-token-7f3e9a1c");
    assert_secrets_stay_out_of_vv_logs(&up, &[], &env, container_secrets).await;
}

//! The credential sources: each issues numbered temporary credentials and reports them through
//! `on_issue`, so the test upstream can be told to accept exactly those.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::server::{FakeHttp, FakeReply, FakeRequest};
use crate::support::Creds;

/// One set of temporary credentials a fake handed out.
#[derive(Clone, Debug)]
pub struct Issued {
    pub creds: Creds,
    pub expiration: SystemTime,
}

impl Issued {
    pub fn access_key(&self) -> &str {
        &self.creds.access_key
    }

    pub fn token(&self) -> &str {
        self.creds.token.as_deref().unwrap_or_default()
    }

    fn expiration_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.expiration).to_string()
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

type OnIssue = Arc<dyn Fn(&Issued) + Send + Sync>;

/// Numbered keys `ASIA<PREFIX>0000000n` valid for `lifetime`.
struct Issuer {
    prefix: &'static str,
    next: AtomicU64,
    lifetime: Mutex<Duration>,
    on_issue: Mutex<Option<OnIssue>>,
}

impl Issuer {
    fn new(prefix: &'static str) -> Issuer {
        Issuer {
            prefix,
            next: AtomicU64::new(1),
            lifetime: Mutex::new(Duration::from_secs(3600)),
            on_issue: Mutex::new(None),
        }
    }

    fn issue(&self) -> Issued {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let issued = Issued {
            creds: Creds::with_token(
                format!("ASIA{}{n:08}", self.prefix),
                format!(
                    "{}-secret-{n}-wJalrXUtnFEMIK7MDENGbPxRfiCY",
                    self.prefix.to_lowercase()
                ),
                format!(
                    "{}-session-token-{n}-IQoJb3JpZ2luX2Vj",
                    self.prefix.to_lowercase()
                ),
            ),
            // Whole seconds, as the services announce it.
            expiration: whole_seconds(SystemTime::now() + *self.lifetime.lock().unwrap()),
        };
        let callback = self.on_issue.lock().unwrap().clone();
        if let Some(callback) = callback {
            callback(&issued);
        }
        issued
    }
}

/// STS: `AssumeRole` and `AssumeRoleWithWebIdentity` (query protocol, XML answers), reached with
/// `AWS_ENDPOINT_URL_STS`. Each call issues new credentials.
pub struct FakeSts {
    pub http: FakeHttp,
    issuer: Arc<Issuer>,
}

impl FakeSts {
    pub async fn start() -> FakeSts {
        let issuer = Arc::new(Issuer::new("STS"));
        let i = issuer.clone();
        let http = FakeHttp::start(move |req| sts_reply(&i, req)).await;
        FakeSts { http, issuer }
    }

    pub fn on_issue(&self, callback: impl Fn(&Issued) + Send + Sync + 'static) {
        *self.issuer.on_issue.lock().unwrap() = Some(Arc::new(callback));
    }

    /// Lifetime of credentials issued from now on (default one hour).
    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.issuer.lifetime.lock().unwrap() = lifetime;
    }

    /// The STS calls so far (Action, RoleArn, … via [`FakeRequest::param`]).
    pub fn calls(&self) -> Vec<FakeRequest> {
        self.http.requests()
    }
}

fn sts_reply(issuer: &Issuer, req: &FakeRequest) -> FakeReply {
    let action = req.param("Action").unwrap_or_default();
    if !matches!(action.as_str(), "AssumeRole" | "AssumeRoleWithWebIdentity") {
        return FakeReply::new(
            400,
            "text/xml",
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>fake STS does not do {action}</Message></Error></ErrorResponse>"),
        );
    }
    let issued = issuer.issue();
    let role = req.param("RoleArn").unwrap_or_default();
    let session = req.param("RoleSessionName").unwrap_or_default();
    let role_name = role.rsplit('/').next().unwrap_or_default();
    let body = format!(
        r#"<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <{action}Result>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/{role_name}/{session}</Arn>
      <AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{key}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </{action}Result>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</{action}Response>"#,
        key = issued.access_key(),
        secret = issued.creds.secret,
        token = issued.token(),
        expiration = issued.expiration_rfc3339(),
    );
    FakeReply::new(200, "text/xml", body)
}

/// The container credentials endpoint of ECS and EKS Pod Identity
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), checking the `Authorization` token. It hands out
/// its current credentials until [`FakeContainer::rotate`]; it can be taken down.
pub struct FakeContainer {
    pub http: FakeHttp,
    issuer: Arc<Issuer>,
    current: Arc<Mutex<Option<Issued>>>,
    down: Arc<AtomicBool>,
    token: String,
}

impl FakeContainer {
    pub async fn start(token: &str) -> FakeContainer {
        let issuer = Arc::new(Issuer::new("CTR"));
        let current: Arc<Mutex<Option<Issued>>> = Arc::new(Mutex::new(None));
        let down = Arc::new(AtomicBool::new(false));
        let (i, c, d, t) = (
            issuer.clone(),
            current.clone(),
            down.clone(),
            token.to_string(),
        );
        let http = FakeHttp::start(move |req| {
            if d.load(Ordering::SeqCst) {
                return FakeReply::new(500, "text/plain", "fake container endpoint is down");
            }
            if req.header("authorization") != Some(t.as_str()) {
                return FakeReply::new(401, "text/plain", "wrong or missing authorization token");
            }
            let issued = c.lock().unwrap().get_or_insert_with(|| i.issue()).clone();
            let body = serde_json::json!({
                "AccessKeyId": issued.access_key(),
                "SecretAccessKey": issued.creds.secret,
                "Token": issued.token(),
                "Expiration": issued.expiration_rfc3339(),
                "RoleArn": "arn:aws:iam::123456789012:role/task-role",
            });
            FakeReply::new(200, "application/json", body.to_string())
        })
        .await;
        FakeContainer {
            http,
            issuer,
            current,
            down,
            token: token.to_string(),
        }
    }

    pub fn on_issue(&self, callback: impl Fn(&Issued) + Send + Sync + 'static) {
        *self.issuer.on_issue.lock().unwrap() = Some(Arc::new(callback));
    }

    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.issuer.lifetime.lock().unwrap() = lifetime;
    }

    /// Issues new credentials and hands them out from now on.
    pub fn rotate(&self) -> Issued {
        let issued = self.issuer.issue();
        *self.current.lock().unwrap() = Some(issued.clone());
        issued
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT/v2/credentials/…`, the value for the FULL_URI variable.
    pub fn full_uri(&self) -> String {
        format!("{}/v2/credentials/fake-task", self.http.url())
    }

    pub fn fetches(&self) -> usize {
        self.http.request_count()
    }
}

/// EC2 instance metadata with IMDSv2 sessions (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).
pub struct FakeImds {
    pub http: FakeHttp,
    issuer: Arc<Issuer>,
}

const IMDS_TOKEN: &str = "fake-imds-session-token-AQAEAFAKE";
const IMDS_ROLE: &str = "fake-instance-role";

impl FakeImds {
    pub async fn start() -> FakeImds {
        let issuer = Arc::new(Issuer::new("IMD"));
        let current: Mutex<Option<Issued>> = Mutex::new(None);
        let i = issuer.clone();
        let http = FakeHttp::start(move |req| {
            if req.method == "PUT" && req.path() == "/latest/api/token" {
                let Some(ttl) = req.header("x-aws-ec2-metadata-token-ttl-seconds") else {
                    return FakeReply::new(400, "text/plain", "missing token TTL");
                };
                return FakeReply::new(200, "text/plain", IMDS_TOKEN)
                    .header("x-aws-ec2-metadata-token-ttl-seconds", ttl);
            }
            if req.header("x-aws-ec2-metadata-token") != Some(IMDS_TOKEN) {
                return FakeReply::new(401, "text/plain", "IMDSv2 session token required");
            }
            match req.path() {
                "/latest/meta-data/iam/security-credentials/" => {
                    FakeReply::new(200, "text/plain", IMDS_ROLE)
                }
                p if p == format!("/latest/meta-data/iam/security-credentials/{IMDS_ROLE}") => {
                    let issued = current.lock().unwrap().get_or_insert_with(|| i.issue()).clone();
                    let body = serde_json::json!({
                        "Code": "Success",
                        "LastUpdated": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": issued.access_key(),
                        "SecretAccessKey": issued.creds.secret,
                        "Token": issued.token(),
                        "Expiration": issued.expiration_rfc3339(),
                    });
                    FakeReply::new(200, "application/json", body.to_string())
                }
                _ => FakeReply::new(404, "text/plain", "not found"),
            }
        })
        .await;
        FakeImds { http, issuer }
    }

    pub fn on_issue(&self, callback: impl Fn(&Issued) + Send + Sync + 'static) {
        *self.issuer.on_issue.lock().unwrap() = Some(Arc::new(callback));
    }

    /// `http://127.0.0.1:PORT/`, the value for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("{}/", self.http.url())
    }
}

/// The SSO portal's GetRoleCredentials (`AWS_ENDPOINT_URL_SSO`), checking the bearer token the
/// `aws sso login` cache holds.
pub struct FakeSso {
    pub http: FakeHttp,
    issuer: Arc<Issuer>,
}

impl FakeSso {
    pub async fn start(access_token: &str) -> FakeSso {
        let issuer = Arc::new(Issuer::new("SSO"));
        let (i, token) = (issuer.clone(), access_token.to_string());
        let http = FakeHttp::start(move |req| {
            if req.path() != "/federation/credentials" {
                return FakeReply::new(404, "application/json", "{}");
            }
            if req.header("x-amz-sso_bearer_token") != Some(token.as_str()) {
                return FakeReply::new(
                    401,
                    "application/json",
                    r#"{"message":"Session token not found or invalid"}"#,
                )
                .header("x-amzn-errortype", "UnauthorizedException");
            }
            let issued = i.issue();
            let millis = issued
                .expiration
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let body = serde_json::json!({"roleCredentials": {
                "accessKeyId": issued.access_key(),
                "secretAccessKey": issued.creds.secret,
                "sessionToken": issued.token(),
                "expiration": millis,
            }});
            FakeReply::new(200, "application/json", body.to_string())
        })
        .await;
        FakeSso { http, issuer }
    }

    pub fn on_issue(&self, callback: impl Fn(&Issued) + Send + Sync + 'static) {
        *self.issuer.on_issue.lock().unwrap() = Some(Arc::new(callback));
    }
}

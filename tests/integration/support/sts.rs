//! A fake STS on plain-HTTP loopback for `sigv4-proxy check`'s identity step
//! (`AWS_ENDPOINT_URL_STS=http://127.0.0.1:PORT`): answers every request with one canned
//! GetCallerIdentity result or error, and counts the requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct FakeSts {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSts {
    /// Answers GetCallerIdentity with `arn` in `account`.
    pub async fn identity(arn: &str, account: &str) -> FakeSts {
        let body = format!(
            r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>{arn}</Arn>
    <UserId>AROAEXAMPLEID:alice</UserId>
    <Account>{account}</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
"#
        );
        Self::start(200, body).await
    }

    /// Answers every request with an STS error.
    pub async fn error(status: u16, code: &str, message: &str) -> FakeSts {
        let body = format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>{code}</Code>
    <Message>{message}</Message>
  </Error>
  <RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId>
</ErrorResponse>
"#
        );
        Self::start(status, body).await
    }

    async fn start(status: u16, body: String) -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        let body = Bytes::from(body);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let body = body.clone();
                let count = count.clone();
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    let count = count.clone();
                    async move {
                        let _ = req.into_body().collect().await;
                        count.fetch_add(1, Ordering::SeqCst);
                        let mut resp = http::Response::new(Full::new(body));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", "text/xml".parse().unwrap());
                        resp.headers_mut().insert(
                            "x-amzn-requestid",
                            "01234567-89ab-cdef-0123-456789abcdef".parse().unwrap(),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeSts {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_STS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

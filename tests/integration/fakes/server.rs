//! A minimal HTTP/1.1 server on `127.0.0.1:0` that answers with a closure and records every
//! request. Stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A request as the fake saw it.
#[derive(Clone, Debug)]
pub struct FakeRequest {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p)
    }

    /// A parameter of the query string or of a form body, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self
            .path_and_query
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .chain(form_urlencoded::parse(&self.body))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The access key id in a SigV4 `Authorization` header.
    pub fn signed_by(&self) -> Option<String> {
        let auth = self.header("authorization")?;
        let at = auth.find("Credential=")? + "Credential=".len();
        auth[at..].split('/').next().map(str::to_string)
    }
}

/// What the fake answers.
#[derive(Clone, Debug)]
pub struct FakeReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl FakeReply {
    pub fn new(status: u16, content_type: &str, body: impl Into<String>) -> FakeReply {
        FakeReply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> FakeReply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&FakeRequest) -> FakeReply + Send + Sync>;

pub struct FakeHttp {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeHttp {
    pub async fn start(
        handler: impl Fn(&FakeRequest) -> FakeReply + Send + Sync + 'static,
    ) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, recorded) = (handler.clone(), recorded.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (handler, recorded) = (handler.clone(), recorded.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body =
                                    tokio::time::timeout(Duration::from_secs(10), body.collect())
                                        .await
                                        .ok()
                                        .and_then(Result::ok)
                                        .map(|b| b.to_bytes())
                                        .unwrap_or_default();
                                let request = FakeRequest {
                                    method: parts.method.to_string(),
                                    path_and_query: parts
                                        .uri
                                        .path_and_query()
                                        .map(|p| p.to_string())
                                        .unwrap_or_default(),
                                    headers: parts.headers,
                                    body,
                                };
                                let reply = handler(&request);
                                recorded.lock().unwrap().push(request);
                                let mut resp = http::Response::builder().status(reply.status);
                                for (k, v) in &reply.headers {
                                    resp = resp.header(k, v);
                                }
                                Ok::<_, Infallible>(
                                    resp.body(Full::new(Bytes::from(reply.body))).unwrap(),
                                )
                            }
                        },
                    );
                    let _ = tokio::time::timeout(
                        Duration::from_secs(120),
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    )
                    .await;
                });
            }
        });
        FakeHttp {
            addr,
            requests,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

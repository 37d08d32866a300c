//! `sigv4-proxy health`: one plain-HTTP GET to a running proxy's admin listener, for container
//! health checks and exec probes where there is no shell and no curl. Blocking std I/O: one
//! request does not need a runtime. Every step shares one deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Most of an answer worth reading: the status line and a `/readyz` JSON reason.
const MAX_ANSWER: usize = 16 * 1024;

/// What the admin listener said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The body, as text, cut at [`MAX_ANSWER`] bytes.
    pub body: String,
}

/// `GET url` within `timeout`. Only `http://HOST[:PORT]/PATH` URLs: the admin listener has no TLS.
pub fn probe(url: &str, timeout: Duration) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("--url `{url}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--url `{url}`: only http:// URLs (the admin listener has no TLS)"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url `{url}` has no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "no answer from {url} within {}",
                    humantime::format_duration(timeout)
                )
            })
    };
    let mut last_err = format!("{host} resolved to no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_err)?;
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sigv4-proxy-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send to {url}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while answer.len() < MAX_ANSWER {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // The status line is enough to decide; a body still streaming can be left.
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                return Err(remaining().err().unwrap_or_else(|| e.to_string()));
            }
            Err(e) => return Err(format!("cannot read from {url}: {e}")),
        }
    }
    parse(&answer).ok_or_else(|| format!("{url} did not answer with HTTP"))
}

/// Status and body of a raw HTTP/1.x response.
fn parse(raw: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next()?;
    let mut words = status_line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_default();
    Some(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering `reply` (or nothing, holding the connection, when `None`).
    fn serve_once(reply: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            match reply {
                Some(reply) => {
                    let _ = conn.write_all(reply.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(2)),
            }
        });
        format!("http://{addr}/healthz")
    }

    #[test]
    fn reads_status_and_body() {
        let url = serve_once(Some("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
        let answer = probe(&url, Duration::from_secs(2)).unwrap();
        assert_eq!(
            answer,
            Answer {
                status: 200,
                body: "ok".into()
            }
        );
        let url = serve_once(Some(
            "HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"not ready\"}",
        ));
        assert_eq!(probe(&url, Duration::from_secs(2)).unwrap().status, 503);
    }

    #[test]
    fn a_silent_server_times_out_within_the_bound() {
        let url = serve_once(None);
        let started = Instant::now();
        let err = probe(&url, Duration::from_millis(300)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(err.contains("within"), "{err}");
    }

    #[test]
    fn refuses_what_it_cannot_ask() {
        assert!(
            probe("https://127.0.0.1:9901/healthz", Duration::from_secs(1))
                .unwrap_err()
                .contains("only http://")
        );
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_none());
    }
}

//! `sigv4-proxy health`: one plain-http GET to the admin listener's `/healthz`, so a container
//! image with no shell and no curl can still have a HEALTHCHECK. Blocking std I/O, no runtime:
//! it runs every few seconds and must stay cheap.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Sends `GET` to `url` (`http://HOST:PORT/PATH`) and returns the status code. Every step
/// (resolve, connect, write, read) shares the one `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: only http:// URLs (the admin listener speaks plain HTTP)"
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{url}: no answer within {timeout:?}"))
    };
    let addr = (authority.host(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {}: {e}", authority.host()))?
        .next()
        .ok_or_else(|| format!("{url}: {} has no address", authority.host()))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sigv4-proxy-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    // The status line is all we need; read until it is complete.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    parse_status_line(&head).ok_or_else(|| format!("{url}: not an HTTP answer"))
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn refuses_https_and_garbage() {
        let t = Duration::from_secs(1);
        assert!(probe("https://127.0.0.1:9600/healthz", t)
            .unwrap_err()
            .contains("http://"));
        assert!(probe("not a url at all", t).is_err());
    }

    #[test]
    fn closed_port_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }
}

//! Compressed request bodies, inflated for inspection only (the endpoint gets the body as sent).
//! `Content-Encoding: gzip` and `deflate` (opensearch-py's `http_compress`, opensearch-js's
//! `compression: 'gzip'`, Logstash, Fluent Bit) are read through a decoder; the inflated bytes
//! are bounded in total and in their ratio to the compressed size, so a decompression bomb
//! costs little before it counts as unreadable.

use std::io::{self, BufRead, BufReader, Read};

/// Inflated bodies up to this size are read whatever their ratio.
const RATIO_FREE: u64 = 8 << 20;
/// Past [`RATIO_FREE`], a body may inflate to at most this many times its compressed size:
/// well above what JSON and NDJSON reach (5–50×), far below a bomb's (1000× per layer).
const MAX_RATIO: u64 = 100;

/// A body reader that inflates `encoding` (the `Content-Encoding` header: one coding or a
/// comma-separated list, applied in order), or an error naming a coding it cannot read.
/// `compressed_len` is the body's length as received; `limit` the most inflated bytes read.
pub(crate) fn inflated<'a>(
    body: Box<dyn BufRead + 'a>,
    encoding: Option<&str>,
    compressed_len: u64,
    limit: u64,
) -> Result<Box<dyn BufRead + 'a>, String> {
    let Some(encoding) = encoding else {
        return Ok(body);
    };
    let codings: Vec<String> = encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    if codings.is_empty() {
        return Ok(body);
    }
    let mut reader = body;
    // The last coding applied is undone first.
    for coding in codings.iter().rev() {
        reader = match coding.as_str() {
            "gzip" | "x-gzip" => {
                Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(reader)))
            }
            "deflate" | "x-deflate" => deflate(reader)?,
            other => {
                return Err(format!(
                    "the body is compressed with `{other}`, which the proxy cannot read"
                ))
            }
        };
    }
    let bound = limit.min(RATIO_FREE.max(compressed_len.saturating_mul(MAX_RATIO)));
    Ok(Box::new(BufReader::new(Bounded {
        inner: reader,
        left: bound,
        bound,
        encoding: encoding.to_string(),
    })))
}

/// HTTP's `deflate` is zlib-wrapped; some clients send raw deflate, which OpenSearch (Netty's
/// `ZLIB_OR_NONE`) also reads.
fn deflate<'a>(mut r: Box<dyn BufRead + 'a>) -> Result<Box<dyn BufRead + 'a>, String> {
    let head = r
        .fill_buf()
        .map_err(|e| format!("reading the body failed: {e}"))?;
    let zlib = head.len() >= 2
        && head[0] & 0x0f == 8
        && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
    Ok(if zlib {
        Box::new(BufReader::new(flate2::bufread::ZlibDecoder::new(r)))
    } else {
        Box::new(BufReader::new(flate2::bufread::DeflateDecoder::new(r)))
    })
}

struct Bounded<R> {
    inner: R,
    left: u64,
    bound: u64,
    encoding: String,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the {} body inflates past {} bytes, the most the proxy inspects",
                    self.encoding, self.bound
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(body: &[u8], encoding: Option<&str>, limit: u64) -> Result<Vec<u8>, String> {
        let mut r = inflated(Box::new(body), encoding, body.len() as u64, limit)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn gzip_deflate_and_layers_are_inflated() {
        let text = b"{\"index\":{\"_index\":\"logs\"}}\n{}\n";
        assert_eq!(read_all(&gzip(text), Some("gzip"), 1 << 20).unwrap(), text);
        assert_eq!(
            read_all(&gzip(text), Some("X-GZIP"), 1 << 20).unwrap(),
            text
        );
        assert_eq!(read_all(text, None, 1 << 20).unwrap(), text);
        assert_eq!(read_all(text, Some("identity"), 1 << 20).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(text).unwrap();
        assert_eq!(
            read_all(&z.finish().unwrap(), Some("deflate"), 1 << 20).unwrap(),
            text
        );
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(text).unwrap();
        assert_eq!(
            read_all(&raw.finish().unwrap(), Some("deflate"), 1 << 20).unwrap(),
            text
        );
        assert_eq!(
            read_all(&gzip(&gzip(text)), Some("gzip, gzip"), 1 << 20).unwrap(),
            text
        );
        assert!(read_all(text, Some("br"), 1 << 20)
            .unwrap_err()
            .contains("`br`"));
        assert!(read_all(b"not gzip", Some("gzip"), 1 << 20).is_err());
    }

    #[test]
    fn bombs_stop_at_the_bounds() {
        // 64 MiB of zeros is about 64 KiB of gzip: over the ratio bound.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let e = read_all(&bomb, Some("gzip"), 100 << 20).unwrap_err();
        assert!(e.contains("inflates past"), "{e}");
        // Below the ratio-free size, the total bound still holds.
        let small = gzip(&vec![b'a'; 4096]);
        assert!(read_all(&small, Some("gzip"), 1000)
            .unwrap_err()
            .contains("past 1000 bytes"));
        assert_eq!(read_all(&small, Some("gzip"), 4096).unwrap().len(), 4096);
    }
}

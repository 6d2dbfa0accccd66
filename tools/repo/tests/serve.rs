//! The test file server, checked with plain HTTP/1.1 over a TCP socket.

use repo::serve::ServedDir;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Sends one request and returns the status line, the headers (lower-case names) and the body.
fn get(addr: SocketAddr, path: &str, extra: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn serves_files_ranges_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    // Larger than one chunk, so the body comes in several pieces.
    let bytes: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("targets/big.bin"), &bytes).unwrap();
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();

    let served = ServedDir::start(dir.path()).unwrap();
    let addr = served.addr();
    assert_eq!(served.url(), format!("http://127.0.0.1:{}/", served.port()));

    let (status, headers, body) = get(addr, "/targets/big.bin", "");
    assert!(status.contains("200"), "{status}");
    assert_eq!(header(&headers, "content-length"), Some("700000"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert!(body == bytes, "the body is the file");

    let (status, headers, body) = get(addr, "/targets/big.bin", "Range: bytes=699990-\r\n");
    assert!(status.contains("206"), "{status}");
    assert_eq!(
        header(&headers, "content-range"),
        Some("bytes 699990-699999/700000")
    );
    assert_eq!(body, &bytes[699_990..]);

    let (status, _, _) = get(addr, "/targets/big.bin", "Range: bytes=800000-\r\n");
    assert!(status.contains("416"), "{status}");
    let (status, _, _) = get(addr, "/targets/missing.bin", "");
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = get(addr, "/targets/../../etc/passwd", "");
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = get(addr, "/targets", "");
    assert!(
        status.contains("404"),
        "a directory is not listed: {status}"
    );

    assert_eq!(served.requests()[0], "/targets/big.bin");
    drop(served);
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens after drop"
    );
}

#[test]
fn missing_directory_is_an_error() {
    let err = ServedDir::start("/nonexistent/ballast-serve").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/ballast-serve"),
        "{err}"
    );
}

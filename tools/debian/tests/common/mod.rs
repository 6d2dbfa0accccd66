//! Helpers shared by the integration tests: hand-made `.deb` files and a tiny HTTP server.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One entry of a test package's data.tar.
pub enum Item {
    Dir(&'static str, u32),
    File(&'static str, u32, &'static [u8]),
    OwnedFile(&'static str, u32, u64, u64, &'static [u8]),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    /// A raw name written straight into the header, bypassing the tar crate's checks.
    RawName(&'static [u8], &'static [u8]),
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

/// A data.tar with `items`.
pub fn data_tar(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        match item {
            Item::Dir(path, mode) => {
                let mut h = header(tar::EntryType::Directory, *mode, 0);
                builder.append_data(&mut h, path, &[][..]).unwrap();
            }
            Item::File(path, mode, data) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            Item::OwnedFile(path, mode, uid, gid, data) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                h.set_uid(*uid);
                h.set_gid(*gid);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            Item::Symlink(path, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                builder.append_link(&mut h, path, target).unwrap();
            }
            Item::HardLink(path, target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                builder.append_link(&mut h, path, target).unwrap();
            }
            Item::RawName(name, data) => {
                let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
                let old = h.as_old_mut();
                old.name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                builder.append(&h, *data).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// A .deb whose data.tar is compressed as `compression` ("xz", "zst", "gz" or "").
pub fn deb(items: &[Item], compression: &str) -> Vec<u8> {
    let tar = data_tar(items);
    let data = match compression {
        "xz" => {
            let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(&tar[..], 3).unwrap(),
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        }
        _ => tar,
    };
    let control = data_tar(&[Item::File("./control", 0o644, b"Package: test\n")]);
    let mut ar = ar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        ar.append(&header, bytes).unwrap();
    };
    add("debian-binary", b"2.0\n");
    add("control.tar", &control);
    let data_name = if compression.is_empty() {
        "data.tar".to_string()
    } else {
        format!("data.tar.{compression}")
    };
    add(&data_name, &data);
    ar.into_inner().unwrap()
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering GET requests from a path -> (status, body) map.
/// Every connection serves one request and is closed. Returns the base URL and the request log.
pub fn serve(routes: HashMap<String, (u16, Vec<u8>)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            log2.lock().unwrap().push(path.clone());
            let (status, body) = routes
                .get(&path)
                .cloned()
                .unwrap_or((404, b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, log)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

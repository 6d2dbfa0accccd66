//! The wire format spoken over the virtio-serial byte stream.
//!
//! # Frames
//!
//! A frame, before encoding, is
//!
//! ```text
//! [u32 BE connection id][u8 kind][u32 BE payload length][payload]
//! ```
//!
//! | kind | value | id | payload |
//! | --- | --- | --- | --- |
//! | OPEN | 1 | new id, chosen by the host | empty |
//! | DATA | 2 | connection | 1 to [`MAX_PAYLOAD`] bytes of the byte stream |
//! | CLOSE | 3 | connection | empty: the sender will send no more DATA (its side hit EOF) |
//! | RESET | 4 | 0 | [`MAGIC`], u16 BE version, u64 BE nonce |
//! | HELLO | 5 | 0 | [`MAGIC`], u16 BE version, u64 BE nonce |
//! | WINDOW | 6 | connection | u32 BE: this many more DATA bytes may be sent |
//!
//! # Encoding on the stream
//!
//! Each frame is COBS-encoded (Consistent Overhead Byte Stuffing), which removes every 0x00
//! byte at the cost of at most one extra byte per 254, and is followed by a single 0x00. A
//! 0x00 therefore only ever appears between frames. RESET and HELLO are also *preceded* by a
//! 0x00, so that whatever partial frame came before them on the stream is cut off and cannot
//! swallow them. The receiver splits the stream at 0x00 bytes, ignores empty pieces, and
//! drops pieces that do not decode to a well-formed frame.
//!
//! This is what makes resynchronisation simple: after a reconnect, a restart or garbage on
//! the line, the reader discards bytes up to the next 0x00, and from there on every frame is
//! found again. The magic and the random nonce in RESET and HELLO then tell a fresh session
//! apart from leftovers of an old one.

use snafu::{ensure, Snafu};

/// Marks RESET and HELLO payloads.
pub const MAGIC: [u8; 8] = *b"BALLASTB";
/// Protocol version carried in RESET and HELLO; both ends must agree.
pub const VERSION: u16 = 1;
/// Largest DATA payload in one frame.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 9;
/// Largest encoded frame (COBS overhead included, delimiters excluded).
pub const MAX_ENCODED: usize = HEADER_LEN + MAX_PAYLOAD + (HEADER_LEN + MAX_PAYLOAD) / 254 + 1;

const KIND_OPEN: u8 = 1;
const KIND_DATA: u8 = 2;
const KIND_CLOSE: u8 = 3;
const KIND_RESET: u8 = 4;
const KIND_HELLO: u8 = 5;
const KIND_WINDOW: u8 = 6;
const CONTROL_PAYLOAD_LEN: usize = MAGIC.len() + 2 + 8;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Host to guest: open a new connection to the API socket under `id`.
    Open { id: u32 },
    /// Bytes of connection `id`, in either direction.
    Data { id: u32, payload: Vec<u8> },
    /// The sender's side of connection `id` reached end of file.
    Close { id: u32 },
    /// Host to guest: forget every connection and start session `nonce`.
    Reset { version: u16, nonce: u64 },
    /// Guest to host: session `nonce` is ready (nonce 0: "I just started, reset me").
    Hello { version: u16, nonce: u64 },
    /// The receiver of DATA for `id` has written `credit` more bytes out; the sender may send
    /// that many more.
    Window { id: u32, credit: u32 },
}

/// Why a piece of the stream between two 0x00 bytes is not a frame.
#[derive(Debug, Snafu, PartialEq, Eq)]
pub enum FrameError {
    #[snafu(display("the bytes are not valid COBS"))]
    Cobs,

    #[snafu(display("{len} bytes are too short for a frame header"))]
    TooShort { len: usize },

    #[snafu(display("the header announces {declared} payload bytes but {actual} follow"))]
    LengthMismatch { declared: usize, actual: usize },

    #[snafu(display("more than {} bytes between delimiters", MAX_ENCODED))]
    Oversized,

    #[snafu(display("unknown frame kind {kind}"))]
    UnknownKind { kind: u8 },

    #[snafu(display("malformed frame of kind {kind}: {reason}"))]
    Malformed { kind: u8, reason: &'static str },
}

impl Message {
    /// Appends this frame, encoded and delimited, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Message::Open { id } => encode_frame(*id, KIND_OPEN, &[], out),
            Message::Data { id, payload } => encode_data(*id, payload, out),
            Message::Close { id } => encode_frame(*id, KIND_CLOSE, &[], out),
            Message::Reset { version, nonce } => {
                out.push(0);
                encode_frame(0, KIND_RESET, &control_payload(*version, *nonce), out);
            }
            Message::Hello { version, nonce } => {
                out.push(0);
                encode_frame(0, KIND_HELLO, &control_payload(*version, *nonce), out);
            }
            Message::Window { id, credit } => {
                encode_frame(*id, KIND_WINDOW, &credit.to_be_bytes(), out)
            }
        }
    }

    /// This frame, encoded and delimited.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Parses one frame from its raw (already COBS-decoded) bytes.
    pub fn parse(raw: &[u8]) -> Result<Message, FrameError> {
        ensure!(raw.len() >= HEADER_LEN, TooShortSnafu { len: raw.len() });
        let id = u32::from_be_bytes(raw[0..4].try_into().expect("4 bytes"));
        let kind = raw[4];
        let declared = u32::from_be_bytes(raw[5..9].try_into().expect("4 bytes")) as usize;
        let payload = &raw[HEADER_LEN..];
        ensure!(
            declared == payload.len(),
            LengthMismatchSnafu {
                declared,
                actual: payload.len()
            }
        );
        let malformed = |reason| FrameError::Malformed { kind, reason };
        match kind {
            KIND_OPEN | KIND_DATA | KIND_CLOSE | KIND_WINDOW if id == 0 => {
                Err(malformed("connection id 0 is reserved"))
            }
            KIND_OPEN | KIND_CLOSE if !payload.is_empty() => Err(malformed("unexpected payload")),
            KIND_OPEN => Ok(Message::Open { id }),
            KIND_CLOSE => Ok(Message::Close { id }),
            KIND_DATA if payload.len() > MAX_PAYLOAD => Err(malformed("payload too large")),
            KIND_DATA => Ok(Message::Data {
                id,
                payload: payload.to_vec(),
            }),
            KIND_WINDOW => {
                let credit: [u8; 4] = payload
                    .try_into()
                    .map_err(|_| malformed("credit must be 4 bytes"))?;
                Ok(Message::Window {
                    id,
                    credit: u32::from_be_bytes(credit),
                })
            }
            KIND_RESET | KIND_HELLO => {
                if id != 0 {
                    return Err(malformed("control frames use connection id 0"));
                }
                if payload.len() != CONTROL_PAYLOAD_LEN {
                    return Err(malformed("wrong control payload length"));
                }
                if payload[..MAGIC.len()] != MAGIC {
                    return Err(malformed("bad magic"));
                }
                let rest = &payload[MAGIC.len()..];
                let version = u16::from_be_bytes(rest[0..2].try_into().expect("2 bytes"));
                let nonce = u64::from_be_bytes(rest[2..10].try_into().expect("8 bytes"));
                Ok(if kind == KIND_RESET {
                    Message::Reset { version, nonce }
                } else {
                    Message::Hello { version, nonce }
                })
            }
            _ => Err(FrameError::UnknownKind { kind }),
        }
    }
}

/// Appends one DATA frame for `payload` (at most [`MAX_PAYLOAD`] bytes) to `out`, without
/// building a [`Message`] first.
pub fn encode_data(id: u32, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD, "DATA payload over the cap");
    encode_frame(id, KIND_DATA, payload, out);
}

fn control_payload(version: u16, nonce: u64) -> [u8; CONTROL_PAYLOAD_LEN] {
    let mut p = [0u8; CONTROL_PAYLOAD_LEN];
    p[..MAGIC.len()].copy_from_slice(&MAGIC);
    p[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&version.to_be_bytes());
    p[MAGIC.len() + 2..].copy_from_slice(&nonce.to_be_bytes());
    p
}

fn encode_frame(id: u32, kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&id.to_be_bytes());
    header[4] = kind;
    let len = u32::try_from(payload.len()).expect("payload fits in u32");
    header[5..9].copy_from_slice(&len.to_be_bytes());
    out.reserve(HEADER_LEN + payload.len() + payload.len() / 254 + 3);
    let mut enc = CobsEncoder::start(out);
    enc.push(&header);
    enc.push(payload);
    enc.finish();
    out.push(0);
}

/// Streaming COBS encoder writing into a caller's buffer.
struct CobsEncoder<'a> {
    out: &'a mut Vec<u8>,
    /// Where the length code of the block being written goes.
    code_at: usize,
    code: u8,
}

impl<'a> CobsEncoder<'a> {
    fn start(out: &'a mut Vec<u8>) -> Self {
        let code_at = out.len();
        out.push(0);
        CobsEncoder {
            out,
            code_at,
            code: 1,
        }
    }

    fn close_block(&mut self) {
        self.out[self.code_at] = self.code;
        self.code_at = self.out.len();
        self.out.push(0);
        self.code = 1;
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == 0 {
                self.close_block();
            } else {
                self.out.push(b);
                self.code += 1;
                if self.code == 0xFF {
                    self.close_block();
                }
            }
        }
    }

    fn finish(self) {
        self.out[self.code_at] = self.code;
    }
}

/// Decodes one COBS block sequence (no delimiters) into `out`.
fn cobs_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    out.clear();
    let mut i = 0;
    while i < input.len() {
        let code = input[i];
        ensure!(code != 0, CobsSnafu);
        i += 1;
        let run = usize::from(code) - 1;
        ensure!(i + run <= input.len(), CobsSnafu);
        out.extend_from_slice(&input[i..i + run]);
        i += run;
        if code != 0xFF && i < input.len() {
            out.push(0);
        }
    }
    Ok(())
}

/// Splits a byte stream into frames, skipping anything that does not decode.
///
/// A new decoder (and one after [`Decoder::resync`]) discards everything up to the first
/// 0x00, because it cannot know whether it starts in the middle of a frame.
#[derive(Debug)]
pub struct Decoder {
    pending: Vec<u8>,
    scratch: Vec<u8>,
    skipping: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            pending: Vec::new(),
            scratch: Vec::new(),
            skipping: true,
        }
    }

    /// Forgets any partial frame and waits for the next delimiter.
    pub fn resync(&mut self) {
        self.pending.clear();
        self.skipping = true;
    }

    /// Feeds bytes from the stream; returns every complete piece found, decoded or not.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Result<Message, FrameError>> {
        let mut found = Vec::new();
        while !data.is_empty() {
            let Some(end) = data.iter().position(|&b| b == 0) else {
                if !self.skipping {
                    if self.pending.len() + data.len() > MAX_ENCODED {
                        found.push(Err(FrameError::Oversized));
                        self.resync();
                    } else {
                        self.pending.extend_from_slice(data);
                    }
                }
                break;
            };
            let piece = &data[..end];
            data = &data[end + 1..];
            if std::mem::replace(&mut self.skipping, false) {
                self.pending.clear();
                continue;
            }
            if self.pending.len() + piece.len() > MAX_ENCODED {
                found.push(Err(FrameError::Oversized));
                self.pending.clear();
                continue;
            }
            self.pending.extend_from_slice(piece);
            if self.pending.is_empty() {
                continue;
            }
            let decoded = cobs_decode(&self.pending, &mut self.scratch)
                .and_then(|()| Message::parse(&self.scratch));
            found.push(decoded);
            self.pending.clear();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cobs_encode(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = CobsEncoder::start(&mut out);
        enc.push(input);
        enc.finish();
        out
    }

    /// Small deterministic generator so the test needs no extra dependency.
    fn pseudo_random(seed: u64, len: usize, zero_every: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if zero_every > 0 && x.is_multiple_of(zero_every) {
                    0
                } else {
                    (x >> 24) as u8
                }
            })
            .collect()
    }

    #[test]
    fn cobs_round_trips_edge_cases() {
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![1, 0, 1],
            vec![0xFF; 253],
            vec![0xFF; 254],
            vec![0xFF; 255],
            vec![0xFF; 508],
            vec![0xFF; 509],
        ];
        let mut with_zero = vec![7u8; 254];
        with_zero.push(0);
        cases.push(with_zero);
        for seed in 1..50 {
            cases.push(pseudo_random(
                seed,
                (seed as usize * 97) % 3000,
                seed % 5 * 40,
            ));
        }
        for case in cases {
            let encoded = cobs_encode(&case);
            assert!(!encoded.contains(&0), "encoding must not contain 0x00");
            assert!(encoded.len() <= case.len() + case.len() / 254 + 1);
            let mut decoded = Vec::new();
            cobs_decode(&encoded, &mut decoded).unwrap();
            assert_eq!(decoded, case);
        }
    }

    #[test]
    fn every_message_round_trips() {
        let messages = vec![
            Message::Open { id: 1 },
            Message::Data {
                id: 7,
                payload: pseudo_random(3, MAX_PAYLOAD, 11),
            },
            Message::Data {
                id: u32::MAX,
                payload: vec![0; 10],
            },
            Message::Close { id: 0x0100 },
            Message::Reset {
                version: VERSION,
                nonce: 0x0000_1234_0000_0000,
            },
            Message::Hello {
                version: VERSION,
                nonce: 0,
            },
            Message::Window {
                id: 3,
                credit: 65536,
            },
        ];
        let mut stream = Vec::new();
        for m in &messages {
            m.encode_into(&mut stream);
        }
        let max = messages
            .iter()
            .map(|m| m.encode().len())
            .max()
            .expect("messages");
        assert!(max <= MAX_ENCODED + 2);
        // A fresh decoder skips to the first delimiter; prefix one, then feed in odd pieces.
        let mut decoder = Decoder::new();
        let mut got = decoder.push(&[0]);
        for piece in stream.chunks(997) {
            got.extend(decoder.push(piece));
        }
        let got: Vec<Message> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, messages);
    }

    #[test]
    fn decoder_skips_garbage_and_partial_frames() {
        let reset = Message::Reset {
            version: VERSION,
            nonce: 42,
        };
        let mut stream = Vec::new();
        // The tail of some frame from an earlier session, without its delimiter...
        let mut old = Vec::new();
        encode_data(9, &[1, 2, 3, 4, 5, 6], &mut old);
        stream.extend_from_slice(&old[3..old.len() - 1]);
        // ...then line noise with zeros in it...
        stream.extend_from_slice(&[0x13, 0x00, 0xFF, 0xFE, 0x00, 0x05, 0x01]);
        // ...then a real RESET. Its leading 0x00 cuts off the noise.
        reset.encode_into(&mut stream);
        let mut decoder = Decoder::new();
        let got = decoder.push(&stream);
        let good: Vec<&Message> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(good, vec![&reset]);
        assert!(got.iter().any(Result::is_err));
    }

    #[test]
    fn oversized_runs_are_dropped() {
        let mut decoder = Decoder::new();
        assert!(decoder.push(&[0]).is_empty());
        let noise = vec![0x55u8; MAX_ENCODED + 10];
        let got = decoder.push(&noise);
        assert_eq!(got, vec![Err(FrameError::Oversized)]);
        let open = Message::Open { id: 5 };
        let mut next = vec![0x55u8; 100];
        next.push(0);
        open.encode_into(&mut next);
        let got = decoder.push(&next);
        assert_eq!(got, vec![Ok(open)]);
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let raw = |id: u32, kind: u8, payload: &[u8], declared: u32| {
            let mut v = id.to_be_bytes().to_vec();
            v.push(kind);
            v.extend_from_slice(&declared.to_be_bytes());
            v.extend_from_slice(payload);
            v
        };
        assert!(matches!(
            Message::parse(&[1, 2, 3]),
            Err(FrameError::TooShort { .. })
        ));
        assert!(matches!(
            Message::parse(&raw(1, KIND_DATA, &[1, 2], 3)),
            Err(FrameError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Message::parse(&raw(1, 99, &[], 0)),
            Err(FrameError::UnknownKind { kind: 99 })
        ));
        assert!(matches!(
            Message::parse(&raw(0, KIND_OPEN, &[], 0)),
            Err(FrameError::Malformed { .. })
        ));
        let mut bad_magic = control_payload(VERSION, 1);
        bad_magic[0] = b'X';
        assert!(matches!(
            Message::parse(&raw(0, KIND_RESET, &bad_magic, 18)),
            Err(FrameError::Malformed { .. })
        ));
        let big = vec![1u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            Message::parse(&raw(1, KIND_DATA, &big, big.len() as u32)),
            Err(FrameError::Malformed { .. })
        ));
    }
}

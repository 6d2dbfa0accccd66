//! `GET /exec`: the WebSocket protocol of `apiclient exec`, shared by the API server and
//! apiclient.
//!
//! After the upgrade, binary frames carry raw bytes: the client's stdin to the server, the
//! process's output (stdout and stderr, merged in arrival order) to the client. Text frames
//! carry one JSON control message each: [`ClientMessage`] from the client (the first must be
//! [`ClientMessage::Initialize`]), [`ServerMessage`] from the server. The server pings every
//! [`PING_INTERVAL_SECS`] and gives up on a peer silent for [`PEER_TIMEOUT_SECS`]. The
//! session ends with a Close frame whose reason is a [`CloseReason`]: the exit code of the
//! process, or a sentence saying why it could not run.

use serde::{Deserialize, Serialize};

/// The route.
pub const PATH: &str = "/exec";

/// Seconds between the server's pings.
pub const PING_INTERVAL_SECS: u64 = 2;

/// Seconds without any frame from the peer after which a side ends the session.
pub const PEER_TIMEOUT_SECS: u64 = 10;

/// Most binary frames of stdin the server holds unwritten before the client must wait.
pub const MAX_MESSAGES_OUTSTANDING: u64 = 1024;

/// The size of a terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    pub height: u16,
    pub width: u16,
}

/// A control message from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// First message: run `command` in the running task of host container `target`, in a
    /// pseudo-terminal of size `tty` when given.
    Initialize {
        target: String,
        command: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tty: Option<TtySize>,
    },
    /// The client's stdin has ended; the process's stdin is closed.
    ContentComplete,
    /// The client's terminal was resized.
    Winch { rows: u16, cols: u16 },
}

/// A control message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// Backpressure: the client may have at most `max_messages_outstanding` stdin frames
    /// beyond `messages_written` (the frames the server has written to the process so far).
    Capacity {
        max_messages_outstanding: u64,
        messages_written: u64,
    },
    /// Sent just before a Close frame with a [`CloseReason::Failed`] reason: the whole
    /// sentence, which the reason may only hold cut short.
    Failed { message: String },
}

/// How a session ended, carried as the reason of the server's Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The process exited with this status (128 + N when killed by signal N, as a shell says).
    Exit(u32),
    /// The process could not be run (or the session broke); the sentence says why.
    Failed(String),
}

/// A Close frame's reason holds at most 123 bytes.
const MAX_REASON_BYTES: usize = 123;

impl CloseReason {
    /// The reason text: `exit N` or `error: SENTENCE` (cut at a character boundary to fit).
    pub fn encode(&self) -> String {
        match self {
            CloseReason::Exit(code) => format!("exit {code}"),
            CloseReason::Failed(message) => {
                let mut text = format!("error: {message}");
                if text.len() > MAX_REASON_BYTES {
                    let mut end = MAX_REASON_BYTES;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                }
                text
            }
        }
    }

    /// Reads a reason written by [`CloseReason::encode`]; anything else is `None`.
    pub fn decode(text: &str) -> Option<CloseReason> {
        if let Some(code) = text.strip_prefix("exit ") {
            return code.parse().ok().map(CloseReason::Exit);
        }
        text.strip_prefix("error: ")
            .map(|message| CloseReason::Failed(message.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let init = ClientMessage::Initialize {
            target: "admin".into(),
            command: vec!["sh".into(), "-c".into(), "exit 7".into()],
            tty: Some(TtySize {
                height: 24,
                width: 80,
            }),
        };
        let text = serde_json::to_string(&init).unwrap();
        assert!(text.contains(r#""type":"Initialize""#), "{text}");
        assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), init);
        let done: ClientMessage = serde_json::from_str(r#"{"type":"ContentComplete"}"#).unwrap();
        assert_eq!(done, ClientMessage::ContentComplete);
        let no_tty: ClientMessage =
            serde_json::from_str(r#"{"type":"Initialize","target":"a","command":["ls"]}"#).unwrap();
        assert!(matches!(
            no_tty,
            ClientMessage::Initialize { tty: None, .. }
        ));
        let capacity = ServerMessage::Capacity {
            max_messages_outstanding: MAX_MESSAGES_OUTSTANDING,
            messages_written: 3,
        };
        let text = serde_json::to_string(&capacity).unwrap();
        assert_eq!(
            serde_json::from_str::<ServerMessage>(&text).unwrap(),
            capacity
        );
    }

    #[test]
    fn close_reasons_round_trip_and_fit() {
        for reason in [
            CloseReason::Exit(0),
            CloseReason::Exit(7),
            CloseReason::Failed("no host container 'x'".into()),
        ] {
            assert_eq!(CloseReason::decode(&reason.encode()), Some(reason));
        }
        let long = CloseReason::Failed("é".repeat(200)).encode();
        assert!(long.len() <= MAX_REASON_BYTES);
        assert!(matches!(
            CloseReason::decode(&long),
            Some(CloseReason::Failed(_))
        ));
        assert_eq!(CloseReason::decode("bye"), None);
    }
}

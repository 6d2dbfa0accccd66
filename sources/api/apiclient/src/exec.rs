//! `apiclient exec [-t|-T] TARGET -- COMMAND...`: runs a command in a running host container
//! through the API's `GET /exec` WebSocket (protocol: `api_types::exec`), with this process's
//! stdin, stdout and terminal, and returns the command's exit code.
//!
//! With a terminal (`-t`, the default when stdin is one) the local terminal is put in raw mode
//! for the session (restored afterwards, also on errors), the remote process gets a
//! pseudo-terminal of the same size, and size changes (SIGWINCH) follow. Without one (`-T`, or
//! stdin not a terminal) stdin is copied until end-of-file, then the remote stdin is closed.
//! `-t` with a stdin that is not a terminal still gives the remote process a pseudo-terminal
//! (80x24), with nothing local put in raw mode.

use crate::error::{self, Result};
use api_types::exec::{
    ClientMessage, CloseReason, ServerMessage, TtySize, PEER_TIMEOUT_SECS, PING_INTERVAL_SECS,
};
use futures::{SinkExt, StreamExt};
use snafu::ResultExt;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The host container's name.
    pub target: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Give the process a pseudo-terminal (and put the local one in raw mode).
    pub tty: bool,
}

/// Whether `exec` should use a terminal: `-t` forces it, `-T` forbids it, otherwise when
/// stdin is a terminal.
pub fn want_tty(force: bool, never: bool) -> bool {
    !never && (force || std::io::stdin().is_terminal())
}

/// Bytes of stdin per frame.
const STDIN_CHUNK: usize = 32 * 1024;

/// Runs the command; returns its exit code (0-255, as a shell reports it).
pub async fn exec(socket: &Path, options: &ExecOptions) -> Result<u8> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .context(error::ConnectSnafu {
            socket_path: socket,
        })?;
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://localhost{}", api_types::exec::PATH), stream)
            .await
            .map_err(|e| error::Error::ExecHandshake {
                socket_path: socket.to_path_buf(),
                message: e.to_string(),
            })?;
    let (mut sink, mut incoming) = ws.split();

    // `-t` with stdin not a terminal (a script wanting a remote terminal) has nothing local
    // to put in raw mode.
    let terminal = if options.tty && std::io::stdin().is_terminal() {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let size = terminal.as_ref().and_then(|_| window_size());
    let init = ClientMessage::Initialize {
        target: options.target.clone(),
        command: options.command.clone(),
        tty: if options.tty {
            Some(size.unwrap_or(TtySize {
                height: 24,
                width: 80,
            }))
        } else {
            None
        },
    };
    send_control(&mut sink, &init).await?;

    // Everything the client sends goes through one channel to one writer.
    let (frames, mut frames_rx) = mpsc::channel::<Message>(16);
    let (capacity_tx, capacity_rx) = watch::channel((api_types::exec::MAX_MESSAGES_OUTSTANDING, 0));
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    spawn_stdin(frames.clone(), capacity_rx);
    spawn_pings(frames.clone());
    if options.tty {
        spawn_winch(frames.clone());
    }

    let mut stdout = std::io::stdout();
    let timeout = Duration::from_secs(PEER_TIMEOUT_SECS);
    let mut failure: Option<String> = None;
    let outcome = loop {
        let frame = match tokio::time::timeout(timeout, incoming.next()).await {
            Ok(frame) => frame,
            Err(_) => {
                break Err(error::Error::ExecBroken {
                    target: options.target.clone(),
                    message: format!("the API server was silent for {PEER_TIMEOUT_SECS} s"),
                })
            }
        };
        match frame {
            Some(Ok(Message::Binary(data))) => {
                let written = stdout.write_all(&data).and_then(|()| stdout.flush());
                if let Err(source) = written {
                    break Err(error::Error::WriteOutput { source });
                }
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                Ok(ServerMessage::Capacity {
                    max_messages_outstanding,
                    messages_written,
                }) => {
                    let _ = capacity_tx.send((max_messages_outstanding, messages_written));
                }
                Ok(ServerMessage::Failed { message }) => failure = Some(message),
                Err(e) => tracing::debug!("ignoring a control message: {e}"),
            },
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                break match CloseReason::decode(&reason) {
                    Some(CloseReason::Exit(code)) => Ok(u8::try_from(code & 0xff).unwrap_or(1)),
                    Some(CloseReason::Failed(message)) => Err(error::Error::ExecFailed {
                        target: options.target.clone(),
                        message: failure.take().unwrap_or(message),
                    }),
                    None => Err(error::Error::ExecBroken {
                        target: options.target.clone(),
                        message: format!(
                            "the server closed the session without an exit code ('{reason}')"
                        ),
                    }),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                break Err(error::Error::ExecBroken {
                    target: options.target.clone(),
                    message: e.to_string(),
                })
            }
            None => {
                break Err(error::Error::ExecBroken {
                    target: options.target.clone(),
                    message: "the connection ended without a Close frame".into(),
                })
            }
        }
    };
    drop(terminal);
    drop(frames);
    writer.abort();
    outcome
}

async fn send_control<S>(sink: &mut S, message: &ClientMessage) -> Result<()>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(message).unwrap_or_default();
    sink.send(Message::text(text))
        .await
        .map_err(|e| error::Error::ExecBroken {
            target: String::new(),
            message: e.to_string(),
        })
}

fn control(message: &ClientMessage) -> Message {
    Message::text(serde_json::to_string(message).unwrap_or_default())
}

/// Copies stdin into binary frames on a thread of its own (a read of a terminal that never
/// ends must not keep the process from exiting), waiting while the server holds as many
/// unwritten frames as it allows; at end-of-file sends ContentComplete.
fn spawn_stdin(frames: mpsc::Sender<Message>, capacity: watch::Receiver<(u64, u64)>) {
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut capacity = capacity;
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; STDIN_CHUNK];
        let mut sent = 0u64;
        loop {
            let n = match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Backpressure: wait until the server has written enough of what was sent.
            let room = handle.block_on(capacity.wait_for(|(max, written)| sent < written + max));
            if room.is_err() {
                return;
            }
            let frame = Message::binary(buffer[..n].to_vec());
            if frames.blocking_send(frame).is_err() {
                return;
            }
            sent += 1;
        }
        let _ = frames.blocking_send(control(&ClientMessage::ContentComplete));
    });
}

/// Pings the server as often as it pings us: a session whose stdin has ended (or never
/// sends anything) still shows the server that the client is there.
fn spawn_pings(frames: mpsc::Sender<Message>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
        loop {
            every.tick().await;
            if frames
                .send(Message::Ping(Default::default()))
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

/// Sends the terminal's size whenever it changes.
fn spawn_winch(frames: mpsc::Sender<Message>) {
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = window_size() {
                let message = ClientMessage::Winch {
                    rows: size.height,
                    cols: size.width,
                };
                if frames.send(control(&message)).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// The size of the terminal on stdin, if it is one.
fn window_size() -> Option<TtySize> {
    let mut size = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively borrowed `size`, and
    // reads nothing else; descriptor 0 is only queried.
    #[allow(unsafe_code)]
    let result = unsafe { nix::libc::ioctl(0, nix::libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_row > 0 && size.ws_col > 0).then_some(TtySize {
        height: size.ws_row,
        width: size.ws_col,
    })
}

/// The local terminal in raw mode; the old mode comes back when this is dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).context(error::ExecTerminalSnafu)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw)
            .context(error::ExecTerminalSnafu)?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

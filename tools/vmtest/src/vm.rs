//! A running QEMU process and its serial console.

use crate::config::{Boot, Firmware, VmConfig, LOG_DIR_ENV};
use crate::error::{
    ApiConnectSnafu, ConsoleTimeoutSnafu, ExitedEarlySnafu, IoSnafu, MissingInputSnafu,
    MissingToolSnafu, NoApiSocketSnafu, Result, SpawnSnafu, StillRunningSnafu, WaitSnafu,
};
use snafu::ResultExt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many console lines error messages include.
pub const TAIL_LINES: usize = 40;

/// Console output received so far, with arrival times.
#[derive(Default)]
struct ConsoleState {
    bytes: Vec<u8>,
    /// `(end offset, arrival time)` of every chunk read from QEMU.
    chunks: Vec<(usize, Instant)>,
    stderr: Vec<String>,
    /// QEMU closed its standard output (console).
    eof: bool,
    /// QEMU closed its standard error.
    stderr_eof: bool,
}

#[derive(Default)]
struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl Console {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConsoleState> {
        // A reader thread cannot panic while holding the lock in a way that corrupts the
        // buffer, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running VM. Dropping it kills QEMU.
pub struct Vm {
    child: Option<Child>,
    exit_status: Option<ExitStatus>,
    started: Instant,
    console: Arc<Console>,
    cursor: usize,
    log_path: PathBuf,
    api_socket: Option<PathBuf>,
    readers: Vec<JoinHandle<()>>,
    /// QEMU's standard input, which feeds the serial console.
    console_input: Option<std::process::ChildStdin>,
    /// Numbers the markers of [`Vm::run_shell`].
    shell_sequence: usize,
    /// A console shell has answered once.
    shell_ready: bool,
    // Holds the OVMF variable store copy; deleted with the VM.
    _scratch: tempfile::TempDir,
}

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

fn find_in_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn require_file(what: &'static str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        MissingInputSnafu { what, path }.fail()
    }
}

impl Vm {
    /// Checks the inputs, then starts QEMU. The console log file is created before QEMU starts
    /// and its path is available from [`Vm::log_path`].
    pub fn start(config: VmConfig) -> Result<Vm> {
        let qemu = find_in_path(&config.qemu).ok_or_else(|| {
            MissingToolSnafu {
                program: config.qemu.display().to_string(),
                package: "qemu-system-x86",
            }
            .build()
        })?;
        let scratch = tempfile::Builder::new()
            .prefix("ballast-vm-")
            .tempdir()
            .context(IoSnafu {
                path: std::env::temp_dir(),
            })?;

        let firmware = match &config.boot {
            Boot::Direct { kernel, initrd, .. } => {
                require_file("kernel", kernel)?;
                if let Some(initrd) = initrd {
                    require_file("initrd", initrd)?;
                }
                None
            }
            Boot::Uefi { disk, firmware } => {
                require_file("boot disk", disk)?;
                let fw = match firmware {
                    Some(fw) => fw.clone(),
                    None => Firmware::find()?,
                };
                let vars = scratch.path().join("OVMF_VARS.fd");
                std::fs::copy(&fw.vars_template, &vars).context(IoSnafu {
                    path: &fw.vars_template,
                })?;
                Some((fw, vars))
            }
        };
        for drive in &config.drives {
            require_file("drive", &drive.path)?;
        }
        if let Some(socket) = &config.api_socket {
            // A stale socket from an earlier run would make QEMU fail to listen.
            let _ = std::fs::remove_file(socket);
        }
        let args = config.qemu_args(firmware.as_ref().map(|(fw, vars)| (fw, vars.as_path())))?;

        let log_dir = config
            .log_dir
            .clone()
            .or_else(|| std::env::var_os(LOG_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| std::env::temp_dir().join("ballast-vmtest"));
        std::fs::create_dir_all(&log_dir).context(IoSnafu { path: &log_dir })?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!(
            "{}-{stamp}-{}-{}",
            config.name,
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let log_path = log_dir.join(format!("{base}.console.log"));
        let stderr_path = log_dir.join(format!("{base}.qemu-stderr.log"));
        let mut log_file = File::create(&log_path).context(IoSnafu { path: &log_path })?;
        let stderr_file = File::create(&stderr_path).context(IoSnafu { path: &stderr_path })?;
        let _ = writeln!(
            log_file,
            "# {} {}",
            qemu.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );

        let mut command = Command::new(&qemu);
        command
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it allocates nothing and touches no locks.
        unsafe {
            command.pre_exec(|| {
                // QEMU dies with the thread that started it, even if the harness is killed.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let started = Instant::now();
        let mut child = command.spawn().context(SpawnSnafu {
            program: qemu.display().to_string(),
        })?;

        let console = Arc::new(Console::default());
        let console_input = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            spawn_stdout_reader(stdout, log_file, Arc::clone(&console)),
            spawn_stderr_reader(stderr, stderr_file, Arc::clone(&console)),
        ];
        Ok(Vm {
            child: Some(child),
            exit_status: None,
            started,
            console,
            cursor: 0,
            log_path,
            api_socket: config.api_socket,
            readers,
            console_input,
            shell_sequence: 0,
            shell_ready: false,
            _scratch: scratch,
        })
    }

    /// Types `text` on the serial console (what a person at the console would type).
    pub fn type_on_console(&mut self, text: &str) -> Result<()> {
        let input = self
            .console_input
            .as_mut()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "QEMU has stopped"));
        input
            .and_then(|input| {
                input.write_all(text.as_bytes())?;
                input.flush()
            })
            .context(IoSnafu {
                path: PathBuf::from("<QEMU serial console>"),
            })
    }

    /// Waits until a shell answers on the console: input typed before the shell has the
    /// terminal is lost, so this types a harmless `echo` every two seconds until one comes back.
    pub fn wait_for_shell(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.shell_sequence += 1;
            let n = self.shell_sequence;
            self.type_on_console(&format!("echo '@@shell-''{n}@@'\n"))?;
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(2));
            match self.wait_for_console(&format!("@@shell-{n}@@"), wait) {
                Ok(_) => {
                    self.shell_ready = true;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline || !self.is_running() => return Err(e),
                Err(_) => {}
            }
        }
    }

    /// Runs `command` in the shell on the serial console (development images have one) and
    /// returns what it printed and its exit status. The output is found between two markers the
    /// shell prints around it; the markers are typed split in two, so the echo of the typed line
    /// never matches them.
    pub fn run_shell(&mut self, command: &str, timeout: Duration) -> Result<(String, i32)> {
        if !self.shell_ready {
            self.wait_for_shell(timeout)?;
        }
        self.shell_sequence += 1;
        let n = self.shell_sequence;
        let begin = format!("@@begin-{n}@@");
        let end = format!("@@end-{n}@@");
        let line = format!("echo '@@begin-''{n}@@'; {command}; echo \"@@end-\"'{n}@@' $?\n");
        self.type_on_console(&line)?;
        self.wait_for_console(&begin, timeout)?;
        let start = self.cursor;
        self.wait_for_console(&end, timeout)?;
        let stop = self.cursor - end.len();
        // The status follows the end marker on the same line.
        self.wait_for_console("\n", timeout)?;
        let state = self.console.lock();
        let output = String::from_utf8_lossy(&state.bytes[start..stop]).replace('\r', "");
        let output = without_console_messages(&output)
            .trim_start_matches('\n')
            .to_string();
        let status = String::from_utf8_lossy(&state.bytes[stop + end.len()..self.cursor])
            .trim()
            .parse()
            .unwrap_or(-1);
        Ok((output, status))
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The file the serial console is streamed to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole console output so far (lossy UTF-8).
    pub fn console_log(&self) -> String {
        String::from_utf8_lossy(&self.console.lock().bytes).into_owned()
    }

    /// Console bytes from `offset` on, and the offset to ask from next time.
    pub fn console_since(&self, offset: usize) -> (Vec<u8>, usize) {
        let state = self.console.lock();
        let start = offset.min(state.bytes.len());
        (state.bytes[start..].to_vec(), state.bytes.len())
    }

    /// Whether `pattern` appeared anywhere on the console so far.
    pub fn console_contains(&self, pattern: &str) -> bool {
        find(&self.console.lock().bytes, pattern.as_bytes(), 0).is_some()
    }

    /// Waits until `pattern` appears on the console after the end of the previous match, and
    /// returns the time from QEMU's start to the arrival of the output that completed the match.
    /// Successive calls therefore find successive occurrences. Fails with the last console lines
    /// if QEMU exits first or `timeout` passes.
    pub fn wait_for_console(&mut self, pattern: &str, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        let needle = pattern.as_bytes();
        let mut state = self.console.lock();
        loop {
            if let Some(pos) = find(&state.bytes, needle, self.cursor) {
                let end = pos + needle.len();
                self.cursor = end;
                let arrived = state
                    .chunks
                    .iter()
                    .find(|(chunk_end, _)| *chunk_end >= end)
                    .map_or_else(Instant::now, |(_, at)| *at);
                return Ok(arrived.saturating_duration_since(self.started));
            }
            if state.eof {
                drop(state);
                let status = self.wait_for_exit(Duration::from_secs(5)).map_or_else(
                    |_| "still running after closing its console".to_string(),
                    |s| s.to_string(),
                );
                return ExitedEarlySnafu {
                    pattern,
                    status,
                    log: &self.log_path,
                    tail: self.console_tail(),
                    stderr: self.stderr_text(),
                }
                .fail();
            }
            let now = Instant::now();
            if now >= deadline {
                drop(state);
                return ConsoleTimeoutSnafu {
                    pattern,
                    timeout,
                    log: &self.log_path,
                    tail: self.console_tail(),
                    stderr: self.stderr_text(),
                }
                .fail();
            }
            state = self
                .console
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The last [`TAIL_LINES`] console lines.
    pub fn console_tail(&self) -> String {
        let text = self.console_log();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines[start..].join("\n")
    }

    fn stderr_text(&self) -> String {
        let state = self.console.lock();
        if state.stderr.is_empty() {
            String::new()
        } else {
            format!("\n--- QEMU stderr ---\n{}", state.stderr.join("\n"))
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                self.exit_status = Some(status);
                self.reap();
                false
            }
            _ => false,
        }
    }

    /// Waits up to `timeout` for QEMU to exit on its own (guest power-off, or reboot with
    /// `-no-reboot`), then collects the rest of the console output.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status {
                return Ok(status);
            }
            let Some(child) = self.child.as_mut() else {
                unreachable!("a Vm without a child always has an exit status");
            };
            if let Some(status) = child.try_wait().context(WaitSnafu)? {
                self.exit_status = Some(status);
                self.reap();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return StillRunningSnafu {
                    timeout,
                    log: &self.log_path,
                    tail: self.console_tail(),
                }
                .fail();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU (SIGKILL) and waits for it. Safe to call more than once.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut() {
            if self.exit_status.is_none() {
                let _ = child.kill();
                self.exit_status = Some(child.wait().context(WaitSnafu)?);
            }
        }
        self.reap();
        Ok(())
    }

    /// Collects the reader threads once QEMU is gone, so the console buffer is complete. A
    /// process QEMU started (a guestfwd command) could keep the pipes open, so this waits at most
    /// two seconds for the end of the console stream and then leaves the threads be.
    fn reap(&mut self) {
        self.child = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut state = self.console.lock();
        while !(state.eof && state.stderr_eof) && Instant::now() < deadline {
            state = self
                .console
                .changed
                .wait_timeout(state, deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(state);
        for reader in self.readers.drain(..) {
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }

    /// The host side of the guest's `ballast.api` virtio-serial port, if configured.
    pub fn api_socket(&self) -> Option<&Path> {
        self.api_socket.as_deref()
    }

    /// Connects to the API socket, retrying until QEMU listens on it or `timeout` passes.
    pub fn connect_api(&self, timeout: Duration) -> Result<UnixStream> {
        let path = self
            .api_socket
            .as_deref()
            .ok_or_else(|| NoApiSocketSnafu.build())?;
        let deadline = Instant::now() + timeout;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).context(ApiConnectSnafu { path, timeout });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn spawn_stdout_reader(
    mut stdout: ChildStdout,
    mut log: File,
    console: Arc<Console>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = log.write_all(&buf[..n]);
            let mut state = console.lock();
            state.bytes.extend_from_slice(&buf[..n]);
            let end = state.bytes.len();
            state.chunks.push((end, Instant::now()));
            drop(state);
            console.changed.notify_all();
        }
        let _ = log.flush();
        console.lock().eof = true;
        console.changed.notify_all();
    })
}

fn spawn_stderr_reader(
    stderr: ChildStderr,
    mut log: File,
    console: Arc<Console>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            console.lock().stderr.push(line);
        }
        console.lock().stderr_eof = true;
        console.changed.notify_all();
    })
}

/// Position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(haystack.len()));
    }
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// `output` without the lines the guest's kernel and journal wrote to the console meanwhile
/// (`[   43.576191] ballast-status[179]: ...`, or a kernel message): the shell shares the serial
/// console with them, so a unit that prints at the end of boot can land inside a command's
/// output. Only a line that starts with a kernel timestamp is dropped, which no command the
/// tests run prints (they never read dmesg through the shell).
pub fn without_console_messages(output: &str) -> String {
    output
        .split_inclusive('\n')
        .filter(|line| !is_console_message(line))
        .collect()
}

/// Whether `line` starts with a kernel log timestamp: `[`, spaces, digits, `.`, six digits, `]`.
fn is_console_message(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    let rest = rest.trim_start_matches(' ');
    let Some((stamp, _)) = rest.split_once("] ") else {
        return false;
    };
    let Some((secs, micros)) = stamp.split_once('.') else {
        return false;
    };
    !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && micros.len() == 6
        && micros.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VmConfig;

    #[test]
    fn console_messages_inside_a_command_output_are_dropped() {
        let out = "[   43.576191] apiclient[179]: 152 units active (171 loaded, 0 failed)\n\
                   search-list\n\
                   [ 1234.000001] kernel says hi\n\
                   [not a stamp] kept\n\
                   [ 1.5] kept too\n";
        assert_eq!(
            without_console_messages(out),
            "search-list\n[not a stamp] kept\n[ 1.5] kept too\n"
        );
        assert_eq!(without_console_messages("Europe/Paris"), "Europe/Paris");
    }

    #[test]
    fn finds_after_cursor() {
        assert_eq!(find(b"abcabc", b"bc", 0), Some(1));
        assert_eq!(find(b"abcabc", b"bc", 2), Some(4));
        assert_eq!(find(b"abcabc", b"bc", 5), None);
        assert_eq!(find(b"abc", b"x", 10), None);
    }

    /// A fake "QEMU" (a shell script) exercises the console plumbing without a VM.
    fn fake_qemu(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-qemu");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(dir: &Path, body: &str) -> VmConfig {
        let kernel = dir.join("kernel");
        std::fs::write(&kernel, "").unwrap();
        let mut cfg = VmConfig::direct(&kernel, None, "").log_dir(dir.join("logs"));
        cfg.qemu = fake_qemu(dir, body);
        cfg
    }

    #[test]
    fn waits_for_successive_matches_and_exit() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            "echo 'boot: one'; sleep 0.2; echo 'boot: two'; echo oops >&2; exit 3",
        );
        let mut vm = Vm::start(cfg).unwrap();
        let first = vm
            .wait_for_console("boot:", Duration::from_secs(10))
            .unwrap();
        let second = vm
            .wait_for_console("boot:", Duration::from_secs(10))
            .unwrap();
        assert!(
            second >= first + Duration::from_millis(150),
            "{first:?} {second:?}"
        );
        let status = vm.wait_for_exit(Duration::from_secs(10)).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(vm.console_log().contains("boot: two"));
        let log = std::fs::read_to_string(vm.log_path()).unwrap();
        assert!(log.contains("boot: one\nboot: two\n"), "{log}");

        let err = vm
            .wait_for_console("never", Duration::from_secs(5))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited"), "{text}");
        assert!(text.contains("boot: two"), "{text}");
        assert!(text.contains("oops"), "{text}");
        assert!(
            text.contains(&vm.log_path().display().to_string()),
            "{text}"
        );
    }

    #[test]
    fn times_out_with_tail_and_kills_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let cfg = config(
            dir.path(),
            &format!(
                "echo $$ > {}; for i in $(seq 1 60); do echo line $i; done; exec sleep 30",
                pid_file.display()
            ),
        );
        let mut vm = Vm::start(cfg).unwrap();
        vm.wait_for_console("line 60", Duration::from_secs(10))
            .unwrap();
        let err = vm
            .wait_for_console("never", Duration::from_millis(200))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("did not appear"), "{text}");
        assert!(
            text.contains("line 60") && !text.contains("line 20\n"),
            "{text}"
        );
        assert!(vm.is_running());
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(vm);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "QEMU stand-in still alive after drop"
        );
    }

    #[test]
    fn reports_missing_qemu_and_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), "true");
        cfg.qemu = PathBuf::from("qemu-system-does-not-exist");
        let err = Vm::start(cfg).err().unwrap().to_string();
        assert!(
            err.contains("apt-get install -y --no-install-recommends qemu-system-x86"),
            "{err}"
        );

        let mut cfg = config(dir.path(), "true");
        cfg.boot = Boot::Direct {
            kernel: dir.path().join("missing"),
            initrd: None,
            append: String::new(),
        };
        let err = Vm::start(cfg).err().unwrap().to_string();
        assert!(
            err.contains("kernel") && err.contains("does not exist"),
            "{err}"
        );
    }
}

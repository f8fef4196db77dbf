//! A service binary running as a child process, with its log lines
//! captured (and echoed, so a failing test shows them).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// Parts of every secret the tests hand the services (the registry
/// password of `secrets.rs`, every bearer token): a captured log line that
/// holds one fails the test that ran the process, so the whole suite
/// checks that no secret is ever logged.
pub const SECRET_MARKERS: [&str; 2] = ["pa55-xyzzy", "rsw_"];

/// Path of a workspace binary next to the test executable
/// (`target/<profile>/`). Panics if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps, benchmarks in target/<profile>.
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target dir") } else { dir };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, or `make test`)",
        path.display()
    );
    path
}

#[derive(Default)]
struct Captured {
    lines: Mutex<Vec<String>>,
    notify: Notify,
    closed: Mutex<bool>,
}

/// A running service process.
pub struct Service {
    pub name: String,
    child: Child,
    captured: Arc<Captured>,
}

impl Service {
    /// Starts `binary` with `args`; stderr lines are captured and echoed.
    pub fn spawn(name: &str, binary: &str, args: &[String], envs: &[(&str, &str)]) -> Self {
        Self::spawn_with(name, binary, args, envs, true)
    }

    /// Starts `binary`; `echo` copies its stderr to ours (tests) or not
    /// (benchmarks, where it would cost time).
    pub fn spawn_with(
        name: &str,
        binary: &str,
        args: &[String],
        envs: &[(&str, &str)],
        echo: bool,
    ) -> Self {
        let mut command = Command::new(bin(binary));
        command
            .args(args)
            .env("RUST_LOG", "info,regsweep_scheduler=debug,regsweep_worker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let captured = Arc::new(Captured::default());
        let sink = captured.clone();
        let label = name.to_string();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if echo {
                    eprintln!("[{label}] {line}");
                }
                sink.lines.lock().expect("lock").push(line);
                sink.notify.notify_waiters();
            }
            *sink.closed.lock().expect("lock") = true;
            sink.notify.notify_waiters();
        });
        Self { name: name.to_string(), child, captured }
    }

    /// The first captured line holding a secret, if any.
    pub fn leaked_secret(&self) -> Option<String> {
        let lines = self.captured.lines.lock().expect("lock");
        lines.iter().find(|line| SECRET_MARKERS.iter().any(|m| line.contains(m))).cloned()
    }

    /// Peak resident memory of the process, from `/proc` (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().expect("process running")).expect("pid fits"))
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig)
            .unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.name));
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {timeout:?}", self.name))
            .expect("wait for child")
    }

    /// Every line logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.captured.lines.lock().expect("lock").clone()
    }

    /// Waits for a JSON log line matching `matches` (from the beginning of
    /// the process's output) and returns it.
    pub async fn wait_for_log(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let wait = async {
            let mut seen = 0;
            loop {
                let notified = self.captured.notify.notified();
                {
                    let lines = self.captured.lines.lock().expect("lock");
                    for line in &lines[seen..] {
                        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
                            && matches(&value)
                        {
                            return value;
                        }
                    }
                    seen = lines.len();
                    if *self.captured.closed.lock().expect("lock") {
                        panic!("{} exited before logging {what}", self.name);
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| panic!("{} did not log {what} within {timeout:?}", self.name))
    }

    /// Waits for a log line whose message is `message`.
    pub async fn wait_for_message(&self, message: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for_log(message, timeout, |v| v["message"] == message).await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(line) = self.leaked_secret() {
            panic!("{} logged a secret: {line}", self.name);
        }
    }
}

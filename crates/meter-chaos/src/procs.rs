//! `meterd` role processes: started with a config of their own, killed
//! with SIGKILL, restarted when they exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One running `meterd <role>` process.
#[derive(Debug)]
pub struct Proc {
    role: &'static str,
    /// Its static group membership name (kept across restarts).
    instance: String,
    admin: String,
    child: Child,
}

/// How to start roles.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub meterd: PathBuf,
    pub config: PathBuf,
    pub log_dir: PathBuf,
}

impl Launcher {
    /// Starts `meterd <role>` with its admin server on `admin` and the
    /// static group membership name `instance`.
    pub fn start(&self, role: &'static str, instance: &str, admin: &str, n: usize) -> anyhow::Result<Proc> {
        self.start_with(role, instance, admin, n, &[])
    }

    /// `start`, with configuration overrides (`METER__...` variables) of
    /// this instance, e.g. the listen addresses of a second ingest.
    pub fn start_with(
        &self,
        role: &'static str,
        instance: &str,
        admin: &str,
        n: usize,
        env: &[(String, String)],
    ) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.log_dir.join(format!("{role}-{n}.log")))?;
        let child = Command::new(&self.meterd)
            .arg("--config")
            .arg(&self.config)
            .arg(role)
            .env("METER__ADMIN__LISTEN", admin)
            .env("METER__KAFKA__INSTANCE_ID", instance)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {} {role}: {e}", self.meterd.display()))?;
        Ok(Proc { role, instance: instance.to_owned(), admin: admin.to_owned(), child })
    }
}

impl Proc {
    /// SIGKILL, and wait for the exit.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful drain: leaves its consumer group), then SIGKILL
    /// if it still runs after 30 s.
    pub fn terminate(&mut self) {
        if signal(self.child.id(), "TERM").is_ok() {
            for _ in 0..300 {
                if !self.alive() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        self.kill9();
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its static group membership name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The role it runs.
    pub fn role(&self) -> &'static str {
        self.role
    }

    /// The admin address (for readiness).
    pub fn admin(&self) -> &str {
        &self.admin
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`) with kill(1).
pub fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?.success();
    anyhow::ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}

/// The pid in a pid file of the local stack.
pub fn pid_file(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(text.trim().parse()?)
}

/// True when `GET http://{admin}/readyz` answers 200.
pub async fn ready(admin: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), tokio::net::TcpStream::connect(admin)).await
    else {
        return false;
    };
    if s.write_all(format!("GET /readyz HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), s.read_to_string(&mut buf)).await;
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

//! A throwaway PostgreSQL server per test: `initdb` into a temporary directory, `postgres` on a free port of
//! 127.0.0.1 (and a Unix socket in the same directory), stopped and removed when the [`TestPg`] drops.
//!
//! The binaries come from `DRAKON_PG_BIN` (a directory holding `initdb`, `postgres` and `pg_isready`), else the
//! newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package). When neither exists and the test runs as
//! root, the helper installs the package itself (`apt-get update && apt-get install -y postgresql`, once, under a
//! file lock); otherwise it fails saying what to install. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` user (`runuser -u postgres`), owning the temporary directory.
//!
//! The server is started by a small shell that also holds the read end of a pipe from this process: when the pipe
//! closes, because the `TestPg` dropped or because the test process died (even by SIGKILL), the shell stops the
//! server with a fast shutdown. No server outlives its test process; only a killed one leaves its temporary
//! directory behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown may take before the shell is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Debian's `postgresql` package puts each major version's binaries.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

const INSTALL: &str = "ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
     { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }";

/// Starts the server, then waits on the pipe from the test (fd 3) and stops the server when it closes.
const SUPERVISOR: &str = r#"exec 3<&0
"$1/postgres" -D "$2/data" -p "$3" -k "$2" -h 127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=100 </dev/null >>"$2/server.log" 2>&1 &
pid=$!
( read -r _ <&3; kill -INT "$pid" 2>/dev/null ) &
wait "$pid""#;

/// A running PostgreSQL server that only this test uses.
#[derive(Debug)]
pub struct TestPg {
    dir: tempfile::TempDir,
    port: u16,
    supervisor: Child,
    pipe: Option<ChildStdin>,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs as the server's user: `postgres` when we are root, ourselves otherwise.
fn as_server_user(program: impl AsRef<Path>) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program.as_ref());
        command
    } else {
        Command::new(program.as_ref())
    }
}

fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DRAKON_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn postgres_bin() -> PathBuf {
    if let Some(bin) = find_bin() {
        return bin;
    }
    assert!(
        is_root(),
        "PostgreSQL is not installed: run `apt-get install -y postgresql` (Debian), or set DRAKON_PG_BIN to the \
         directory holding initdb, postgres and pg_isready"
    );
    let status = Command::new("flock")
        .args(["/tmp/drakon-postgresql-install.lock", "sh", "-c", INSTALL])
        .status()
        .expect("run flock and apt-get");
    assert!(status.success(), "`apt-get install -y postgresql` failed");
    find_bin().expect("postgresql installed, yet no /usr/lib/postgresql/*/bin/initdb")
}

fn run(mut command: Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the server accepts connections; false if it exited or took too long.
fn wait_ready(bin: &Path, port: u16, supervisor: &mut Child) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if supervisor.try_wait().ok().flatten().is_some() {
            return false;
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn read_log(dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(dir.join("server.log")) {
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// Starts `postgres` on `port` over the data in `dir` under its supervisor shell; `None` if it did not come up.
fn launch(bin: &Path, dir: &Path, port: u16) -> Option<(Child, Option<ChildStdin>)> {
    let mut supervisor = as_server_user("sh")
        .arg("-c")
        .arg(SUPERVISOR)
        .arg("sh")
        .arg(bin)
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the postgres supervisor shell");
    let pipe = supervisor.stdin.take();
    if wait_ready(bin, port, &mut supervisor) {
        return Some((supervisor, pipe));
    }
    drop(pipe);
    let _ = supervisor.kill();
    let _ = supervisor.wait();
    None
}

impl TestPg {
    /// Initializes and starts a server; panics with the server's log if it does not come up.
    pub fn start() -> TestPg {
        TestPg::start_configured(false)
    }

    /// Like [`TestPg::start`], with TLS on (`ssl = on`) and a certificate for 127.0.0.1 signed by a throwaway CA,
    /// whose certificate is [`TestPg::ca_file`]. Plain connections are still accepted.
    pub fn start_with_tls() -> TestPg {
        TestPg::start_configured(true)
    }

    /// The PEM file of the CA that signed the server's certificate (after [`TestPg::start_with_tls`]).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls").join("ca.pem")
    }

    fn start_configured(tls: bool) -> TestPg {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new().prefix("drakon-pg-").tempdir().expect("create a temporary directory");
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(dir.path());
            run(chown, "chown");
        }
        let mut initdb = as_server_user(bin.join("initdb"));
        initdb.arg("-D").arg(dir.path().join("data")).args([
            "--no-sync",
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-locale",
        ]);
        run(initdb, "initdb");
        if tls {
            let certs = dir.path().join("tls");
            std::fs::create_dir(&certs).expect("create the certificates' directory");
            crate::tls::make_certificates(&certs);
            let conf = format!(
                "\nssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\n",
                certs.display()
            );
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join("data/postgresql.conf"))
                .expect("open postgresql.conf");
            std::io::Write::write_all(&mut file, conf.as_bytes()).expect("write postgresql.conf");
            // The key must belong to the server's user and be readable by it alone.
            std::fs::set_permissions(certs.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the key");
            if is_root() {
                let mut chown = Command::new("chown");
                chown.arg("-R").arg("postgres:").arg(&certs);
                run(chown, "chown");
            }
        }
        // The port may be taken between choosing it and the server binding it; then try another.
        for _ in 0..3 {
            let port = free_port();
            if let Some((supervisor, pipe)) = launch(&bin, dir.path(), port) {
                return TestPg { dir, port, supervisor, pipe };
            }
        }
        panic!("postgres did not start; its log:\n{}", read_log(dir.path()));
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// The URL of database `name` on this server (see [`TestPg::create_database`]).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await.expect("connect to postgres");
        let driver = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create the database");
        drop(client);
        let _ = driver.await;
        self.url(name)
    }

    /// A plain client on database `name`, as `psql` or another program would connect.
    pub async fn client(&self, name: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(name), tokio_postgres::NoTls).await.expect("connect to the database");
        tokio::spawn(connection);
        client
    }

    /// Stops the server (a fast shutdown: open sessions are ended) and waits until it is gone; the data stays, and
    /// [`TestPg::start_again`] brings it back on the same port.
    pub fn stop_server(&mut self) {
        self.stop();
    }

    /// Starts the stopped server again on the same port, with the same data; panics with its log if it does not
    /// come up.
    pub fn start_again(&mut self) {
        let bin = postgres_bin();
        // The port was ours a moment ago; a short retry covers the kernel releasing it.
        for _ in 0..20 {
            if let Some((supervisor, pipe)) = launch(&bin, self.dir.path(), self.port) {
                self.supervisor = supervisor;
                self.pipe = pipe;
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("postgres did not start again; its log:\n{}", read_log(self.dir.path()));
    }

    /// Closes the pipe, so the supervisor stops the server, and waits for it.
    fn stop(&mut self) {
        drop(self.pipe.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.supervisor.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        self.stop();
    }
}

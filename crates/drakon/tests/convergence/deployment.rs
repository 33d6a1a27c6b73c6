//! Where the scenario runs: one `drakon serve` on SQLite, or three on one throwaway PostgreSQL with a throwaway
//! Redis between them. The scenario is the same; a [`Cluster`] starts the processes, names the live nodes in the
//! [`Gate`], hands out database connections, and carries out the disruptions its deployment has: a restart of
//! the single node, or a node killed and replaced and a Redis restart.

use std::sync::Arc;
use std::time::Duration;

use drakon_testkit::TestServer;
use drakon_testkit::postgres::TestPg;
use drakon_testkit::redis::TestRedis;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::BIN;
use super::db::Db;
use super::world::{DATABASE, Gate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One node on a SQLite file with its in-process bus; restarted (SIGTERM, then a new process on the same
    /// file) mid-run.
    OneSqliteNode,
    /// Three nodes on one PostgreSQL, with Redis as the bus between them; mid-run one node is killed (SIGKILL)
    /// and replaced by a new one, and Redis is killed and started again.
    ThreePostgresNodes,
}

/// Something the run does to the deployment at a moment of the write phase (a fraction of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// A mirror stops reading until the server closes it with 4008 (carried out by the scenario: it needs the
    /// mirrors).
    Stall,
    /// The single node stops gracefully and a new process starts on the same file.
    RestartNode,
    /// A node dies without a word; its clients reconnect to the others, and a replacement joins a moment later.
    KillAndReplaceNode,
    /// Redis dies, stays away a moment and comes back empty: messages published meanwhile are lost.
    RestartRedis,
}

impl Deployment {
    pub fn name(self) -> &'static str {
        match self {
            Deployment::OneSqliteNode => "one node on SQLite",
            Deployment::ThreePostgresNodes => "three nodes on PostgreSQL and Redis",
        }
    }

    /// The disruptions and when they come, as fractions of the write phase.
    pub fn timeline(self) -> Vec<(f64, Disruption)> {
        match self {
            Deployment::OneSqliteNode => vec![(0.3, Disruption::Stall), (0.55, Disruption::RestartNode)],
            Deployment::ThreePostgresNodes => {
                vec![(0.3, Disruption::Stall), (0.5, Disruption::KillAndReplaceNode), (0.7, Disruption::RestartRedis)]
            }
        }
    }
}

/// A running node and its name in the log lines.
#[derive(Debug)]
struct Node {
    name: String,
    server: TestServer,
}

impl Node {
    fn url(&self) -> String {
        self.server.ws_url()
    }
}

/// The running deployment.
#[derive(Debug)]
pub struct Cluster {
    pub gate: Gate,
    nodes: Vec<Node>,
    config: String,
    /// How many nodes were ever started, for naming the next one.
    started: usize,
    /// With PostgreSQL: the server (kept for its lifetime), the database URL, and Redis.
    pg: Option<(TestPg, String, TestRedis)>,
    /// What the disruptions did, for the report.
    pub events: Vec<String>,
}

impl Cluster {
    pub async fn start(deployment: Deployment, config: String) -> Cluster {
        let mut cluster = Cluster {
            gate: Arc::new(tokio::sync::RwLock::new(Vec::new())),
            nodes: Vec::new(),
            config,
            started: 0,
            pg: None,
            events: Vec::new(),
        };
        match deployment {
            Deployment::OneSqliteNode => cluster.add_node().await,
            Deployment::ThreePostgresNodes => {
                let pg = tokio::task::block_in_place(TestPg::start);
                let url = pg.create_database("convergence").await;
                let redis = tokio::task::block_in_place(TestRedis::start);
                cluster.pg = Some((pg, url, redis));
                // One after the other: the first takes the relay lock while alone.
                for _ in 0..3 {
                    cluster.add_node().await;
                }
            }
        }
        cluster
    }

    /// Starts one more node and puts it in the gate.
    async fn add_node(&mut self) {
        let server = match &self.pg {
            None => TestServer::spawn(BIN, &self.config).await,
            Some((_, url, redis)) => {
                let env = [("DRAKON_DATABASE_URL", url.as_str()), ("DRAKON_REDIS_URL", &redis.url())];
                TestServer::spawn_with(BIN, &self.config, &env).await
            }
        };
        let node = Node { name: format!("node {}", self.started), server };
        self.started += 1;
        self.gate.write().await.push(node.url());
        self.nodes.push(node);
    }

    /// A new connection to the database, as another program would open it.
    pub async fn db(&self) -> Db {
        match &self.pg {
            None => Db::sqlite(&self.nodes[0].server.dir_path().join(DATABASE)),
            Some((_, url, _)) => Db::postgres(url).await,
        }
    }

    /// The live nodes' names and URLs.
    pub fn nodes(&self) -> Vec<(String, String)> {
        self.nodes.iter().map(|n| (n.name.clone(), n.url())).collect()
    }

    /// Restarts the single node on the same directory (config and database survive; the port changes) while the
    /// writer goes on writing SQL, then lets everyone reconnect to the new URL.
    pub async fn restart_node(&mut self, rng: &mut ChaCha8Rng, start: Instant) {
        let at = start.elapsed().as_secs_f64();
        let mut urls = self.gate.write().await;
        let old = self.nodes.pop().expect("a running node");
        let (status, dir) = old.server.terminate().await;
        assert!(status.success(), "drakon exited with {status} on SIGTERM");
        // Stay down a moment: outside writes land in the file while no server is there to publish them.
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
        // The writer's SQL goes on meanwhile: the new server must start (and migrate) beside another writer.
        let server = TestServer::spawn_in(BIN, dir, &[]).await;
        let node = Node { name: format!("node {}", self.started), server };
        self.started += 1;
        *urls = vec![node.url()];
        self.events.push(format!(
            "{at:.1} s: {} stopped, {} listening at {:.1} s",
            old.name,
            node.name,
            start.elapsed().as_secs_f64()
        ));
        self.nodes.push(node);
    }

    /// Kills node `victim` (an index into [`Cluster::nodes`]) with SIGKILL, out of the gate first so nobody new
    /// connects to it; then, after a moment, starts a replacement, which joins the gate when it listens.
    pub async fn kill_and_replace(&mut self, victim: usize, rng: &mut ChaCha8Rng, start: Instant) {
        let at = start.elapsed().as_secs_f64();
        let node = {
            let mut urls = self.gate.write().await;
            let node = self.nodes.remove(victim);
            urls.retain(|u| *u != node.url());
            node
        };
        let name = node.name.clone();
        // kill_on_drop: SIGKILL, no close frames, no goodbye to PostgreSQL or Redis.
        drop(node);
        // Its clients reconnect to the others meanwhile.
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
        let (url, redis) = match &self.pg {
            Some((_, url, redis)) => (url.clone(), redis.url()),
            None => panic!("only the PostgreSQL deployment kills nodes"),
        };
        // The replacement must start while the writes go on (its start-up migration once deadlocked with them:
        // see `joining.rs`).
        let server =
            TestServer::spawn_with(BIN, &self.config, &[("DRAKON_DATABASE_URL", &url), ("DRAKON_REDIS_URL", &redis)])
                .await;
        let node = Node { name: format!("node {}", self.started), server };
        self.started += 1;
        self.gate.write().await.push(node.url());
        self.nodes.push(node);
        let new = self.nodes.last().expect("the replacement");
        self.events.push(format!(
            "{at:.1} s: {name} killed; {} listening at {:.1} s",
            new.name,
            start.elapsed().as_secs_f64()
        ));
    }

    /// Kills Redis, keeps it away a moment, and starts it again (empty, on the same port).
    pub async fn restart_redis(&mut self, rng: &mut ChaCha8Rng, start: Instant) {
        let at = start.elapsed().as_secs_f64();
        let (_, _, redis) = self.pg.as_mut().expect("Redis runs only beside PostgreSQL");
        tokio::task::block_in_place(|| redis.kill());
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
        tokio::task::block_in_place(|| redis.restart());
        self.events.push(format!("{at:.1} s: Redis killed; back at {:.1} s", start.elapsed().as_secs_f64()));
    }

    /// Stops every node with SIGTERM; returns what went wrong.
    pub async fn stop(self) -> Vec<String> {
        let mut failures = Vec::new();
        for node in self.nodes {
            let (status, _dir) = node.server.terminate().await;
            if !status.success() {
                failures.push(format!("{} exited with {status} after the run", node.name));
            }
        }
        failures
    }
}

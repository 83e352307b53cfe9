//! PostgreSQL and Redis for tests, real servers on loopback: the pair `scripts/test.sh`
//! started (it exports `FLACK_TEST_POSTGRES_URL` and `FLACK_TEST_REDIS_URL`), or else a pair
//! this process starts through `scripts/services.sh`, stopped when the process is gone. A
//! test that restarts a server (fault tests) takes a [`Services::private`] pair of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A PostgreSQL and a Redis server.
pub struct Services {
    /// Their directory (`None`: started by someone else, not ours to restart).
    dir: Option<PathBuf>,
    /// A superuser's URL (tests create a database each: [`Services::fresh_database`]).
    pub postgres_url: String,
    /// The Redis server's URL (tests keep apart by a key prefix each: [`fresh_prefix`]).
    pub redis_url: String,
    /// Stop them when dropped.
    owned: bool,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh")
}

fn run(args: &[&str]) {
    let status = Command::new(script())
        .args(args)
        .status()
        .expect("scripts/services.sh runs");
    assert!(status.success(), "scripts/services.sh {args:?} failed");
}

/// A value from `DIR/services.env`.
fn read_env(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("services.env")).expect("services.env written");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} in services.env"))
        .to_string()
}

impl Services {
    /// The pair every test of this process shares.
    pub fn shared() -> &'static Services {
        static SHARED: OnceLock<Services> = OnceLock::new();
        SHARED.get_or_init(|| {
            match (
                std::env::var("FLACK_TEST_POSTGRES_URL"),
                std::env::var("FLACK_TEST_REDIS_URL"),
            ) {
                (Ok(postgres_url), Ok(redis_url)) => Services {
                    dir: None,
                    postgres_url,
                    redis_url,
                    owned: false,
                },
                // Never dropped: the script stops them once this process has exited.
                _ => Services::start(false),
            }
        })
    }

    /// A pair of this test's own, stopped when dropped (for tests that restart them).
    pub fn private() -> Services {
        Services::start(true)
    }

    fn start(owned: bool) -> Services {
        let dir = std::env::temp_dir().join(format!("flack-services-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.to_str().expect("a UTF-8 path").to_string();
        let pid = std::process::id().to_string();
        run(&["start", &path, "--until-gone", &pid]);
        Services {
            postgres_url: read_env(&dir, "FLACK_TEST_POSTGRES_URL"),
            redis_url: read_env(&dir, "FLACK_TEST_REDIS_URL"),
            dir: Some(dir),
            owned,
        }
    }

    fn control(&self, command: &str) {
        let dir = self.dir.as_ref().expect("a pair this process started");
        run(&[command, dir.to_str().expect("a UTF-8 path")]);
    }

    /// Stops Redis and starts it again on the same port (everything it held is gone).
    pub fn restart_redis(&self) {
        self.control("restart-redis");
    }

    /// Stops PostgreSQL (fast shutdown: connections are cut).
    pub fn stop_postgres(&self) {
        self.control("stop-postgres");
    }

    /// Starts PostgreSQL again after [`Services::stop_postgres`].
    pub fn start_postgres(&self) {
        self.control("start-postgres");
    }

    /// A new empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&self.postgres_url)
            .await
            .expect("PostgreSQL answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let base = self
            .postgres_url
            .rsplit_once('/')
            .map_or(self.postgres_url.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if self.owned {
            self.control("stop");
            if let Some(dir) = &self.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A Redis key prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

//! A connection to the store's PostgreSQL database: where it is, the credentials, and the
//! statements prepared on it, remade after the server restarts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::meta::{MetaError, MetaResult};

/// How long an operation waits for a server that went away to come back before it fails.
const RECONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long one connection attempt may take (a partitioned host answers nothing).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the store's database is, with the credentials to reach it. Displays without the
/// password.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    user: String,
    /// `HOST:PORT/DB`.
    place: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}@{}", self.user, self.place)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}@{}", self.user, self.place)
    }
}

impl Target {
    /// Parses a `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` URL. A password missing from it
    /// comes from `password_file`, then `PGPASSWORD`, then `~/.pgpass` (or `PGPASSFILE`),
    /// as libpq looks for one.
    pub fn parse(url: &str, password_file: Option<&Path>) -> Result<Target, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("a PostgreSQL URL starts with postgres://".into());
        }
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            format!("it is not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DB")
        })?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => return Err("the URL names no host; write postgres://USER@HOST:PORT/DB".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let Some(db) = config.get_dbname().map(str::to_string) else {
            return Err("the URL names no database; write postgres://USER@HOST:PORT/DB".into());
        };
        let Some(user) = config.get_user().map(str::to_string) else {
            return Err("the URL names no user; write postgres://USER@HOST:PORT/DB".into());
        };
        if config.get_password().is_none()
            && let Some(pw) = password(password_file, &host, port, &db, &user)?
        {
            config.password(pw);
        }
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("tenantfs");
        Ok(Target {
            config,
            user,
            place: format!("{host}:{port}/{db}"),
        })
    }

    /// The same server and database, logged in as another role.
    pub fn as_role(&self, role: &str, password: &str) -> Target {
        let mut config = self.config.clone();
        config.user(role).password(password);
        Target {
            config,
            user: role.to_string(),
            place: self.place.clone(),
        }
    }
}

fn password(
    file: Option<&Path>,
    host: &str,
    port: u16,
    db: &str,
    user: &str,
) -> Result<Option<String>, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read the password file {}: {e}", file.display()))?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
    }
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        return Ok(Some(pw));
    }
    let pgpass = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
    let Some(path) = pgpass else { return Ok(None) };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    Ok(pgpass_lookup(&text, host, &port.to_string(), db, user))
}

/// The password of the first line of a `.pgpass` file that matches, as libpq reads it:
/// `host:port:db:user:password`, `*` matching anything, `\` escaping `:` and `\`.
pub(crate) fn pgpass_lookup(
    text: &str,
    host: &str,
    port: &str,
    db: &str,
    user: &str,
) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let want = [host, port, db, user];
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

/// A server error's message and code, or the client's error.
pub fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for MetaError {
    fn from(e: tokio_postgres::Error) -> MetaError {
        use tokio_postgres::error::SqlState;
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => MetaError::DiskFull,
            Some(c)
                if *c == SqlState::LOCK_NOT_AVAILABLE
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                MetaError::Busy
            }
            _ => MetaError::Engine(detail(&e).into()),
        }
    }
}

pub type Param<'a> = &'a (dyn ToSql + Sync);

/// A parameter a deferred statement owns until it is sent.
pub type Arg = Box<dyn ToSql + Sync + Send>;

/// Boxes each value as an [`Arg`].
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        vec![$(Box::new($v) as $crate::meta::postgres::conn::Arg),*]
    };
}
pub(crate) use args;

/// A change waiting to be sent (see [`Conn::defer`]).
struct Deferred {
    sql: &'static str,
    args: Vec<Arg>,
}

/// How a transaction opens: a BEGIN statement and, if given, a query whose rows the
/// transaction reads with [`Conn::opened`].
#[derive(Clone, Copy)]
pub struct Begin {
    pub begin: &'static str,
    pub query: Option<&'static str>,
}

impl Begin {
    pub const PLAIN: Begin = Begin {
        begin: "BEGIN",
        query: None,
    };
}

/// The last request of a round trip, after the BEGIN and the deferred changes.
enum Tail<'a> {
    Nothing,
    Query(&'static str, &'a [Param<'a>]),
    Exec(&'static str, &'a [Param<'a>]),
    Dynamic(&'a Statement, &'a [Param<'a>]),
    Batch(&'a str),
}

/// What each request of a round trip returned.
enum Out {
    Done,
    Rows(Vec<Row>),
    Count(u64),
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<Out, tokio_postgres::Error>> + 'a>>;

/// One session with the server, set up by `setup` (a role, a search path) each time it is
/// made, with its prepared statements. Requests are pipelined: a transaction's BEGIN, the
/// changes it deferred and the query that needs them go to the server together and cost
/// one round trip, each a prepared statement the server does not plan again.
pub struct Conn {
    target: Target,
    setup: String,
    /// Drives the connection, on the calling thread, while a request waits.
    rt: tokio::runtime::Runtime,
    client: RefCell<Client>,
    stmts: RefCell<HashMap<&'static str, Statement>>,
    /// Changes of the open transaction that return nothing, not sent yet: they go to the
    /// server together, before its next query or with its COMMIT (see [`Conn::defer`]).
    pending: RefCell<Vec<Deferred>>,
    /// A transaction is open (its BEGIN may not be sent yet): changes wait in `pending`.
    in_tx: Cell<bool>,
    /// The open transaction's BEGIN, not sent yet: it goes with the transaction's first
    /// request, and a transaction that sends nothing costs nothing.
    begin: Cell<Option<Begin>>,
    /// The BEGIN was sent: a lost connection fails the transaction rather than reconnecting.
    begun: Cell<bool>,
    /// The rows of the BEGIN's query, once sent.
    opened: RefCell<Vec<Row>>,
}

impl Conn {
    pub fn open(target: &Target, setup: String) -> MetaResult<Conn> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                MetaError::Engine(format!("cannot start the PostgreSQL client: {e}").into())
            })?;
        let client = Self::connect(&rt, target, &setup)?;
        Ok(Conn {
            target: target.clone(),
            setup,
            rt,
            client: RefCell::new(client),
            stmts: RefCell::default(),
            pending: RefCell::default(),
            in_tx: Cell::new(false),
            begin: Cell::new(None),
            begun: Cell::new(false),
            opened: RefCell::default(),
        })
    }

    fn connect(rt: &tokio::runtime::Runtime, target: &Target, setup: &str) -> MetaResult<Client> {
        let (client, connection) = rt.block_on(target.config.connect(NoTls)).map_err(|e| {
            MetaError::Engine(
                format!("cannot connect to PostgreSQL at {target}: {}", detail(&e)).into(),
            )
        })?;
        rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {}", detail(&e));
            }
        });
        rt.block_on(client.batch_execute(setup))?;
        Ok(client)
    }

    /// The client, connected again if the server went away, waiting a few seconds for it
    /// to come back. Inside a transaction a lost connection is the transaction's failure.
    fn client(&self) -> MetaResult<std::cell::RefMut<'_, Client>> {
        let mut client = self.client.borrow_mut();
        if client.is_closed() && !self.begun.get() {
            let start = Instant::now();
            loop {
                match Self::connect(&self.rt, &self.target, &self.setup) {
                    Ok(c) => {
                        *client = c;
                        self.stmts.borrow_mut().clear();
                        tracing::info!(server = %self.target, "reconnected to PostgreSQL");
                        break;
                    }
                    Err(e) if start.elapsed() >= RECONNECT_WAIT => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        Ok(client)
    }

    /// The prepared statement for `sql`, prepared now (one round trip, once per session)
    /// if it is new.
    fn stmt(&self, client: &Client, sql: &'static str) -> MetaResult<Statement> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self.rt.block_on(client.prepare(sql))?;
        self.stmts.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    /// Sends the BEGIN if it waits, the deferred changes and `tail`, in one round trip, and
    /// returns what `tail` returned.
    fn send(&self, tail: Tail<'_>) -> MetaResult<Out> {
        let begin = self.begin.take();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if begin.is_none() && pending.is_empty() {
            // The common case outside transactions: no pipeline to build.
            let c = self.client()?;
            return match tail {
                Tail::Nothing => Ok(Out::Done),
                Tail::Query(sql, p) => {
                    let s = self.stmt(&c, sql)?;
                    Ok(Out::Rows(self.rt.block_on(c.query(&s, p))?))
                }
                Tail::Exec(sql, p) => {
                    let s = self.stmt(&c, sql)?;
                    Ok(Out::Count(self.rt.block_on(c.execute(&s, p))?))
                }
                Tail::Dynamic(s, p) => Ok(Out::Count(self.rt.block_on(c.execute(s, p))?)),
                Tail::Batch(sql) => {
                    self.rt.block_on(c.batch_execute(sql))?;
                    Ok(Out::Done)
                }
            };
        }
        let c = self.client()?;
        let begin_query = match begin.and_then(|b| b.query) {
            Some(q) => Some(self.stmt(&c, q)?),
            None => None,
        };
        let deferred = pending
            .iter()
            .map(|d| self.stmt(&c, d.sql))
            .collect::<MetaResult<Vec<_>>>()?;
        let tail_stmt = match tail {
            Tail::Query(sql, _) | Tail::Exec(sql, _) => Some(self.stmt(&c, sql)?),
            _ => None,
        };
        let args: Vec<Vec<Param<'_>>> = pending
            .iter()
            .map(|d| d.args.iter().map(|a| &**a as Param<'_>).collect())
            .collect();
        let client: &Client = &c;
        let mut requests: Vec<Pending<'_>> = Vec::with_capacity(deferred.len() + 3);
        if let Some(b) = begin {
            requests.push(Box::pin(async move {
                client.batch_execute(b.begin).await.map(|()| Out::Done)
            }));
        }
        if let Some(q) = &begin_query {
            requests.push(Box::pin(async move {
                client.query(q, &[]).await.map(Out::Rows)
            }));
        }
        for (s, a) in deferred.iter().zip(&args) {
            requests.push(Box::pin(async move {
                client.execute(s, a).await.map(Out::Count)
            }));
        }
        let tail_stmt = tail_stmt.as_ref();
        requests.push(match tail {
            Tail::Nothing => Box::pin(async { Ok(Out::Done) }),
            Tail::Query(_, p) => Box::pin(async move {
                client
                    .query(tail_stmt.expect("prepared"), p)
                    .await
                    .map(Out::Rows)
            }),
            Tail::Exec(_, p) => Box::pin(async move {
                client
                    .execute(tail_stmt.expect("prepared"), p)
                    .await
                    .map(Out::Count)
            }),
            Tail::Dynamic(s, p) => {
                Box::pin(async move { client.execute(s, p).await.map(Out::Count) })
            }
            Tail::Batch(sql) => {
                Box::pin(async move { client.batch_execute(sql).await.map(|()| Out::Done) })
            }
        });
        if begin.is_some() {
            self.begun.set(true);
        }
        // Polled in order, so the requests reach the server in order.
        let mut outs = self
            .rt
            .block_on(futures_util::future::try_join_all(requests))?;
        if begin_query.is_some()
            && let Out::Rows(rows) = std::mem::replace(&mut outs[1], Out::Done)
        {
            *self.opened.borrow_mut() = rows;
        }
        Ok(outs.pop().expect("the tail is there"))
    }

    pub fn rows(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Vec<Row>> {
        match self.send(Tail::Query(sql, p))? {
            Out::Rows(r) => Ok(r),
            _ => unreachable!("a query returns rows"),
        }
    }

    pub fn row(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Option<Row>> {
        let mut rows = self.rows(sql, p)?;
        if rows.len() > 1 {
            return Err(MetaError::Engine(
                format!("a query for one row returned {}", rows.len()).into(),
            ));
        }
        Ok(rows.pop())
    }

    pub fn one(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Row> {
        self.row(sql, p)?
            .ok_or_else(|| MetaError::Engine("a query for one row returned none".into()))
    }

    pub fn exec(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<u64> {
        match self.send(Tail::Exec(sql, p))? {
            Out::Count(n) => Ok(n),
            _ => unreachable!("a change returns a count"),
        }
    }

    /// Runs `f` in a transaction that `begin` opens, then COMMITs, or rolls back when
    /// anything fails. The BEGIN waits for the transaction's first request.
    pub fn transaction<T>(&self, begin: Begin, f: impl FnOnce() -> MetaResult<T>) -> MetaResult<T> {
        self.begin.set(Some(begin));
        self.opened.borrow_mut().clear();
        self.in_tx.set(true);
        let out = f().and_then(|v| {
            if self.opening() && self.pending.borrow().is_empty() {
                // Nothing was read or changed: there is nothing to commit.
                self.begin.set(None);
                return Ok(v);
            }
            self.send(Tail::Batch("COMMIT")).map(|_| v)
        });
        let sent = self.begun.replace(false);
        if out.is_err() {
            self.pending.borrow_mut().clear();
            self.begin.set(None);
            // A connection that broke needs no ROLLBACK: the server ended the transaction.
            if sent {
                let _ = self
                    .client()
                    .and_then(|c| Ok(self.rt.block_on(c.batch_execute("ROLLBACK"))?));
            }
        }
        self.in_tx.set(false);
        self.opened.borrow_mut().clear();
        out
    }

    /// The rows the open transaction's BEGIN query returned, once sent.
    pub fn opened(&self) -> std::cell::Ref<'_, Vec<Row>> {
        self.opened.borrow()
    }

    /// Whether the open transaction's BEGIN is still to be sent.
    pub fn opening(&self) -> bool {
        self.begin.get().is_some()
    }

    /// Sends the open transaction's BEGIN now, if it waits still.
    pub fn start(&self) -> MetaResult<()> {
        if self.opening() {
            self.send(Tail::Nothing)?;
        }
        Ok(())
    }

    /// A change whose result nobody reads: inside a transaction it waits, to be sent with
    /// the next request or the COMMIT, so a create's five or six such changes cost no round
    /// trip of their own.
    pub fn defer(&self, sql: &'static str, args: Vec<Arg>) -> MetaResult<()> {
        self.pending.borrow_mut().push(Deferred { sql, args });
        if !self.in_tx.get() {
            self.send(Tail::Nothing)?;
        }
        Ok(())
    }

    /// A statement built at run time, not kept.
    pub fn prepare_dynamic(&self, sql: &str) -> MetaResult<Statement> {
        self.start()?;
        let c = self.client()?;
        Ok(self.rt.block_on(c.prepare(sql))?)
    }

    pub fn exec_dynamic(&self, stmt: &Statement, p: &[Param<'_>]) -> MetaResult<u64> {
        match self.send(Tail::Dynamic(stmt, p))? {
            Out::Count(n) => Ok(n),
            _ => unreachable!("a change returns a count"),
        }
    }

    /// Statements without parameters, after any deferred ones, in one round trip.
    pub fn batch(&self, sql: &str) -> MetaResult<()> {
        self.send(Tail::Batch(sql)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_match_as_libpq_matches_them() {
        let text =
            "# comment\nother:5432:*:*:no\n127.0.0.1:*:db:al\\:ice:pa\\:ss\\\\\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "127.0.0.1", "5433", "db", "al:ice").as_deref(),
            Some("pa:ss\\")
        );
        assert_eq!(
            pgpass_lookup(text, "h", "1", "x", "y").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", "1", "d", "u"), None);
    }

    #[test]
    fn a_target_shows_no_password() {
        let t = Target::parse("postgres://u:secret@h:5/d", None).unwrap();
        assert_eq!(t.to_string(), "postgres://u@h:5/d");
        assert!(!format!("{t:?}").contains("secret"));
        for bad in ["mysql://h/d", "postgres://u@h:5", "postgres://h:5/d"] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
    }
}

//! A connection to the store's PostgreSQL database: where it is, the credentials, and the
//! statements prepared on it, remade after the server restarts.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, SimpleQueryMessage, SimpleQueryRow, Statement};

use crate::meta::{MetaError, MetaResult};

/// How long an operation waits for a server that went away to come back before it fails.
const RECONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long one connection attempt may take (a partitioned host answers nothing).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the store's database is, with the credentials to reach it. Displays without the
/// password.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
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
        let mut config = postgres::Config::from_str(url).map_err(|e| {
            format!("it is not a PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DB")
        })?;
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
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

    pub fn connect(&self) -> MetaResult<Client> {
        self.config.connect(NoTls).map_err(|e| {
            MetaError::Engine(
                format!("cannot connect to PostgreSQL at {self}: {}", detail(&e)).into(),
            )
        })
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
pub fn detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for MetaError {
    fn from(e: postgres::Error) -> MetaError {
        use postgres::error::SqlState;
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

/// One session with the server, set up by `setup` (a role, a search path) each time it is
/// made, with its prepared statements.
pub struct Conn {
    target: Target,
    setup: String,
    client: RefCell<Client>,
    stmts: RefCell<HashMap<&'static str, Statement>>,
    /// Changes of the open transaction that return nothing, not sent yet: they go to the
    /// server together, before its next query or with its COMMIT (see [`Conn::defer`]).
    pending: RefCell<String>,
    /// A transaction is open (its BEGIN may not be sent yet): changes wait in `pending`.
    in_tx: Cell<bool>,
    /// The open transaction's BEGIN, not sent yet: it goes with the transaction's first
    /// statement (see [`Conn::first`]), and a transaction that sends nothing costs nothing.
    begin: RefCell<Option<String>>,
    /// The BEGIN was sent: a lost connection fails the transaction rather than reconnecting.
    begun: Cell<bool>,
    /// The rows of each statement of the BEGIN batch, once it was sent.
    opened: RefCell<Vec<Vec<SimpleQueryRow>>>,
}

impl Conn {
    pub fn open(target: &Target, setup: String) -> MetaResult<Conn> {
        let mut client = target.connect()?;
        client.batch_execute(&setup)?;
        Ok(Conn {
            target: target.clone(),
            setup,
            client: RefCell::new(client),
            stmts: RefCell::default(),
            pending: RefCell::default(),
            in_tx: Cell::new(false),
            begin: RefCell::default(),
            begun: Cell::new(false),
            opened: RefCell::default(),
        })
    }

    /// The client, connected again if the server went away, waiting a few seconds for it
    /// to come back. Inside a transaction a lost connection is the transaction's failure.
    fn client(&self) -> MetaResult<std::cell::RefMut<'_, Client>> {
        let mut client = self.client.borrow_mut();
        if client.is_closed() && !self.begun.get() {
            let start = Instant::now();
            loop {
                match self.target.connect().and_then(|mut c| {
                    c.batch_execute(&self.setup)?;
                    Ok(c)
                }) {
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

    fn stmt(&self, client: &mut Client, sql: &'static str) -> MetaResult<Statement> {
        if let Some(s) = self.stmts.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.stmts.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    pub fn rows(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Vec<Row>> {
        self.flush()?;
        let mut c = self.client()?;
        let s = self.stmt(&mut c, sql)?;
        Ok(c.query(&s, p)?)
    }

    pub fn row(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Option<Row>> {
        self.flush()?;
        let mut c = self.client()?;
        let s = self.stmt(&mut c, sql)?;
        Ok(c.query_opt(&s, p)?)
    }

    pub fn one(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<Row> {
        self.flush()?;
        let mut c = self.client()?;
        let s = self.stmt(&mut c, sql)?;
        Ok(c.query_one(&s, p)?)
    }

    pub fn exec(&self, sql: &'static str, p: &[Param<'_>]) -> MetaResult<u64> {
        self.flush()?;
        let mut c = self.client()?;
        let s = self.stmt(&mut c, sql)?;
        Ok(c.execute(&s, p)?)
    }

    /// Runs `f` in a transaction that `begin` opens (statements without parameters; what
    /// they return is kept for [`Conn::opened`]), then COMMITs, or rolls back when anything
    /// fails. The BEGIN waits for the transaction's first statement.
    pub fn transaction<T>(&self, begin: &str, f: impl FnOnce() -> MetaResult<T>) -> MetaResult<T> {
        *self.begin.borrow_mut() = Some(begin.to_string());
        self.opened.borrow_mut().clear();
        self.in_tx.set(true);
        let out = f().and_then(|v| {
            if self.opening() && self.pending.borrow().is_empty() {
                // Nothing was read or changed: there is nothing to commit.
                *self.begin.borrow_mut() = None;
                return Ok(v);
            }
            self.batch("COMMIT").map(|()| v)
        });
        let sent = self.begun.replace(false);
        if out.is_err() {
            self.pending.borrow_mut().clear();
            *self.begin.borrow_mut() = None;
            // A connection that broke needs no ROLLBACK: the server ended the transaction.
            if sent {
                let _ = self.client().map(|mut c| c.batch_execute("ROLLBACK"));
            }
        }
        self.in_tx.set(false);
        self.opened.borrow_mut().clear();
        out
    }

    /// The rows each statement of the open transaction's BEGIN batch returned, once sent.
    pub fn opened(&self) -> std::cell::Ref<'_, Vec<Vec<SimpleQueryRow>>> {
        self.opened.borrow()
    }

    /// Whether the open transaction's BEGIN is still to be sent.
    pub fn opening(&self) -> bool {
        self.begin.borrow().is_some()
    }

    /// Sends the open transaction's BEGIN (and anything deferred) with `sql`, a query whose
    /// values are literals, in one round trip, and returns the rows of its last statement.
    /// `None` when the BEGIN went already: the caller runs its prepared statement instead.
    pub fn first(&self, sql: &str) -> MetaResult<Option<Vec<SimpleQueryRow>>> {
        let Some(begin) = self.begin.borrow_mut().take() else {
            return Ok(None);
        };
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        let mut groups = self.send_begin(&format!("{begin};\n{pending}{sql}"))?;
        let last = groups.pop().unwrap_or_default();
        *self.opened.borrow_mut() = groups;
        Ok(Some(last))
    }

    /// Runs a BEGIN batch, the transaction's first round trip, and returns the rows of
    /// each of its statements.
    fn send_begin(&self, sql: &str) -> MetaResult<Vec<Vec<SimpleQueryRow>>> {
        let messages = self.client()?.simple_query(sql)?;
        self.begun.set(true);
        let mut groups = vec![Vec::new()];
        for m in messages {
            match m {
                SimpleQueryMessage::Row(r) => groups.last_mut().expect("never empty").push(r),
                SimpleQueryMessage::CommandComplete(_) => groups.push(Vec::new()),
                _ => {}
            }
        }
        groups.pop();
        Ok(groups)
    }

    /// A change whose result nobody reads: inside a transaction it waits, to be sent with
    /// the next query or the COMMIT, so a create's five or six such changes cost one round
    /// trip instead of one each. Values in it are literals (see [`lit`]).
    pub fn defer(&self, sql: std::fmt::Arguments<'_>) -> MetaResult<()> {
        use std::fmt::Write;
        if !self.in_tx.get() && self.pending.borrow().is_empty() {
            return self.batch(&sql.to_string());
        }
        let mut p = self.pending.borrow_mut();
        p.write_fmt(sql).expect("writing to a String cannot fail");
        p.push_str(";\n");
        Ok(())
    }

    /// Sends the open transaction's BEGIN now, if it waits still.
    pub fn start(&self) -> MetaResult<()> {
        self.flush()
    }

    fn flush(&self) -> MetaResult<()> {
        if let Some(begin) = self.begin.borrow_mut().take() {
            let pending = std::mem::take(&mut *self.pending.borrow_mut());
            let groups = self.send_begin(&format!("{begin};\n{pending}"))?;
            *self.opened.borrow_mut() = groups;
            return Ok(());
        }
        if self.pending.borrow().is_empty() {
            return Ok(());
        }
        let sql = std::mem::take(&mut *self.pending.borrow_mut());
        Ok(self.client()?.batch_execute(&sql)?)
    }

    /// A statement built at run time, not kept.
    pub fn prepare_dynamic(&self, sql: &str) -> MetaResult<Statement> {
        self.flush()?;
        Ok(self.client()?.prepare(sql)?)
    }

    pub fn exec_dynamic(&self, stmt: &Statement, p: &[Param<'_>]) -> MetaResult<u64> {
        self.flush()?;
        Ok(self.client()?.execute(stmt, p)?)
    }

    /// Statements without parameters, after any deferred ones, in one round trip.
    pub fn batch(&self, sql: &str) -> MetaResult<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if let Some(begin) = self.begin.borrow_mut().take() {
            let groups = self.send_begin(&format!("{begin};\n{pending}{sql}"))?;
            *self.opened.borrow_mut() = groups;
            return Ok(());
        }
        if pending.is_empty() {
            Ok(self.client()?.batch_execute(sql)?)
        } else {
            Ok(self.client()?.batch_execute(&(pending + sql))?)
        }
    }
}

/// A value written into SQL text: integers as they are, bytes as a hex `bytea` literal,
/// text quoted (`standard_conforming_strings`, on since PostgreSQL 9.1, keeps backslashes
/// literal; PostgreSQL text cannot hold NUL, so one is dropped: names are bytes, and the
/// subjects and sessions written as text are validated).
pub enum Lit<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
}

pub fn lit<'a>(v: impl Into<Lit<'a>>) -> Lit<'a> {
    v.into()
}

impl From<i64> for Lit<'_> {
    fn from(v: i64) -> Self {
        Lit::Int(v)
    }
}

impl From<u64> for Lit<'_> {
    fn from(v: u64) -> Self {
        Lit::Int(v as i64)
    }
}

impl<'a> From<&'a [u8]> for Lit<'a> {
    fn from(v: &'a [u8]) -> Self {
        Lit::Bytes(v)
    }
}

impl<'a> From<&'a str> for Lit<'a> {
    fn from(v: &'a str) -> Self {
        Lit::Text(v)
    }
}

impl std::fmt::Display for Lit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lit::Int(v) => write!(f, "{v}"),
            Lit::Bytes(b) => write!(f, "'\\x{}'::bytea", hex::encode(b)),
            Lit::Text(t) => write!(f, "'{}'", t.replace('\0', "").replace('\'', "''")),
        }
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

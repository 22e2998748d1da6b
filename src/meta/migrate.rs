//! Moves an embedded store's catalog and every tenant's metadata into PostgreSQL, table by
//! table, in one PostgreSQL transaction: a migration that fails leaves the database as
//! empty as it found it, and the SQLite files are only read.
//!
//! Both engines have the same tables and columns (see `sqlite` and `postgres`), so rows are
//! copied by column name; only what names the engine (the schema version) is not.

use std::path::Path;

use rusqlite::types::Value;
use tokio_postgres::types::{ToSql, Type};

use super::MetaResult;
use super::postgres::catalog::{PgCatalog, catalog_ddl};
use super::postgres::conn::{Begin, Conn, Target};
use super::postgres::{TenantSpace, create_tenant_space};
use super::sqlite::SqliteMeta;

/// The tables of a tenant's metadata, parents before what refers to them.
const TENANT_TABLES: &[&str] = &[
    "inodes",
    "entries",
    "xattrs",
    "acl",
    "groups",
    "links",
    "quotas",
    "dir_quotas",
    "usage",
    "held",
    "writers",
    "orphans",
    "ghosts",
    "gc",
    "metering",
    "info",
];

/// A tenant to move: its id and its `meta.db`.
pub struct TenantSource<'a> {
    pub id: &'a str,
    pub meta_db: &'a Path,
}

/// Rows moved so far and in all, for a progress bar.
pub type Progress<'a> = &'a dyn Fn(u64, u64);

pub fn to_postgres(
    catalog_db: &Path,
    tenants: &[TenantSource<'_>],
    target: &Target,
    tag: &str,
    content_dir: &Path,
    progress: Progress<'_>,
) -> MetaResult<()> {
    // Opening brings an older meta.db to this build's schema first.
    for t in tenants {
        drop(SqliteMeta::open(t.meta_db)?);
    }
    let catalog = rusqlite::Connection::open_with_flags(
        catalog_db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut total = count(&catalog, &["keys", "audit", "tenants"])?;
    let sources = tenants
        .iter()
        .map(|t| {
            let db = rusqlite::Connection::open_with_flags(
                t.meta_db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            total += count(&db, TENANT_TABLES)?;
            Ok(db)
        })
        .collect::<MetaResult<Vec<_>>>()?;

    let conn = Conn::open(target, String::new())?;
    PgCatalog::require_empty(&conn, target)?;
    let mut done = 0;
    conn.transaction(Begin::PLAIN, || {
        conn.batch(&catalog_ddl())?;
        PgCatalog::write_info(&conn, tag, content_dir)?;
        let mut step = |n: u64| {
            done += n;
            progress(done, total);
        };
        step(copy(&catalog, &conn, "keys", "tenantfs.keys", &[])?);
        step(copy(&catalog, &conn, "audit", "tenantfs.audit", &["id"])?);
        for (t, db) in tenants.iter().zip(&sources) {
            let (created, name, suspended): (i64, String, Option<i64>) = catalog.query_row(
                "SELECT created_at, name, suspended_at FROM tenants WHERE id = ?1",
                [t.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let space = PgCatalog::insert_tenant_row(&conn, tag, t.id, &name, created)?;
            conn.exec(
                "UPDATE tenantfs.tenants SET suspended_at = $2 WHERE id = $1",
                &[&t.id, &suspended],
            )?;
            step(1);
            create_tenant_space(&conn, &space, None)?;
            conn.batch(&format!("SET LOCAL search_path TO \"{}\"", space.schema))?;
            for table in TENANT_TABLES {
                step(copy(db, &conn, table, table, &[])?);
            }
            finish_tenant(db, &conn, &space)?;
        }
        Ok(())
    })
}

/// What differs between the engines once a tenant's rows are in: the schema version, and
/// the next inode number (SQLite's AUTOINCREMENT never hands out a number again, even the
/// last one deleted).
fn finish_tenant(db: &rusqlite::Connection, conn: &Conn, space: &TenantSpace) -> MetaResult<()> {
    let last: i64 = db
        .query_row(
            "SELECT MAX(n) FROM (SELECT MAX(ino) AS n FROM inodes
              UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'inodes')",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .unwrap_or(1);
    conn.batch(&format!(
        "UPDATE info SET value = {} WHERE key = 'schema_version';
         SELECT setval(pg_get_serial_sequence('\"{}\".inodes', 'ino'), {});
         RESET ROLE;",
        super::postgres::SCHEMA_VERSION,
        space.schema,
        last.max(1)
    ))
}

fn count(db: &rusqlite::Connection, tables: &[&str]) -> MetaResult<u64> {
    let mut n = 0;
    for t in tables {
        n += db.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    }
    Ok(n)
}

/// Copies every row of a SQLite table into the PostgreSQL table of the same columns, but
/// `skip`; returns how many.
fn copy(
    from: &rusqlite::Connection,
    to: &Conn,
    table: &str,
    into: &str,
    skip: &[&str],
) -> MetaResult<u64> {
    let cols: Vec<String> = from
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?
        .into_iter()
        .filter(|c| !skip.contains(&c.as_str()))
        .collect();
    let list = cols.join(", ");
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    let insert = to.prepare_dynamic(&format!(
        "INSERT INTO {into}({list}) VALUES ({}) ON CONFLICT DO NOTHING",
        marks.join(", ")
    ))?;
    let mut stmt = from.prepare(&format!("SELECT {list} FROM {table}"))?;
    let mut rows = stmt.query([])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let values = (0..cols.len())
            .map(|i| {
                let v: Value = row.get(i)?;
                Ok(as_pg(v, &insert.params()[i]))
            })
            .collect::<MetaResult<Vec<_>>>()?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        to.exec_dynamic(&insert, &params)?;
        n += 1;
    }
    Ok(n)
}

/// A SQLite value as the PostgreSQL column wants it; SQLite's columns take any type, so a
/// value is converted to the column's.
fn as_pg(v: Value, ty: &Type) -> Box<dyn ToSql + Sync> {
    match (*ty == Type::BYTEA, *ty == Type::TEXT, v) {
        (true, _, Value::Null) => Box::new(None::<Vec<u8>>),
        (_, true, Value::Null) => Box::new(None::<String>),
        (_, _, Value::Null) => Box::new(None::<i64>),
        (true, _, Value::Blob(b)) => Box::new(b),
        (true, _, Value::Text(t)) => Box::new(t.into_bytes()),
        (_, true, Value::Text(t)) => Box::new(t),
        (_, true, Value::Blob(b)) => Box::new(String::from_utf8_lossy(&b).into_owned()),
        (_, true, Value::Integer(i)) => Box::new(i.to_string()),
        (_, _, Value::Integer(i)) => Box::new(i),
        (_, _, Value::Real(r)) => Box::new(r as i64),
        (_, _, other) => Box::new(format!("{other:?}")),
    }
}

//! `tenantfs usage`, `audit` and `fsck`: what tenants use, what was denied, and checks.

use serde::Serialize;

use super::show::{print_json, table};
use crate::error::{Context, Error, Result};
use crate::ids::TenantId;
use crate::store::Store;

#[derive(Serialize)]
struct Hour {
    hour: String,
    ops: u64,
    bytes_read: u64,
    bytes_written: u64,
}

#[derive(Serialize)]
struct UsageReport {
    tenant: String,
    bytes_used: u64,
    inodes_used: u64,
    /// 0 is unlimited.
    max_bytes: u64,
    max_inodes: u64,
    ops: u64,
    bytes_read: u64,
    bytes_written: u64,
    /// The last 7 days, by hour, hours with activity only.
    hourly: Vec<Hour>,
}

/// The tenant named, checked to exist, or every tenant.
fn selected(store: &Store, tenant: Option<TenantId>) -> Result<Vec<TenantId>> {
    let catalog = store.catalog()?;
    match tenant {
        Some(t) => {
            catalog.tenant(&t)?;
            Ok(vec![t])
        }
        None => catalog
            .tenants()?
            .into_iter()
            .map(|t| t.id.parse().map_err(Error::Usage))
            .collect(),
    }
}

pub(super) fn usage(store: &Store, tenant: Option<TenantId>, json: bool) -> Result<()> {
    let tenants = selected(store, tenant)?;
    let week_ago = crate::time::now_secs() - 7 * 24 * 3600;
    let mut reports = Vec::new();
    for t in tenants {
        let u = store.usage(&t)?;
        let rows = store.open_meta(&t)?.read().metering(0)?;
        let total = |f: fn(&(i64, u64, u64, u64)) -> u64| rows.iter().map(f).sum::<u64>();
        reports.push(UsageReport {
            tenant: t.to_string(),
            bytes_used: u.bytes_used,
            inodes_used: u.inodes_used,
            max_bytes: u.max_bytes,
            max_inodes: u.max_inodes,
            ops: total(|r| r.1),
            bytes_read: total(|r| r.2),
            bytes_written: total(|r| r.3),
            hourly: rows
                .iter()
                .filter(|r| r.0 >= week_ago)
                .map(|r| Hour {
                    hour: crate::time::format_secs(r.0),
                    ops: r.1,
                    bytes_read: r.2,
                    bytes_written: r.3,
                })
                .collect(),
        });
    }
    if json {
        return print_json(&reports);
    }
    let limit = |used: u64, max: u64| {
        if max == 0 {
            used.to_string()
        } else {
            format!("{used}/{max}")
        }
    };
    table(
        &["TENANT", "BYTES", "INODES", "OPS", "READ", "WRITTEN"],
        reports
            .iter()
            .map(|r| {
                vec![
                    r.tenant.clone(),
                    limit(r.bytes_used, r.max_bytes),
                    limit(r.inodes_used, r.max_inodes),
                    r.ops.to_string(),
                    r.bytes_read.to_string(),
                    r.bytes_written.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

pub(super) fn audit(
    store: &Store,
    tenant: &TenantId,
    since: Option<String>,
    json: bool,
) -> Result<()> {
    store.catalog()?.tenant(tenant)?;
    let since = match since {
        None => None,
        Some(s) => Some(match humantime::parse_duration(&s) {
            Ok(ago) => crate::time::now_secs() - ago.as_secs() as i64,
            Err(_) => humantime::parse_rfc3339_weak(&s)
                .map(|t| crate::time::to_nanos(t) / 1_000_000_000)
                .map_err(|_| Error::Usage(format!("invalid --since {s:?}: write a duration like 1h or a time like 2026-11-23T06:00:00Z")))?,
        }),
    };
    let records = crate::audit::read(&store.audit_log(tenant), since)
        .context(|| format!("cannot read the audit log of {tenant}"))?;
    if json {
        return print_json(&records);
    }
    table(
        &["TIME", "SUBJECT", "OP", "PATH", "ERRNO", "SUPPRESSED"],
        records
            .iter()
            .map(|r| {
                vec![
                    crate::time::format_secs(r.at),
                    r.subject.clone(),
                    r.op.clone(),
                    r.path.clone(),
                    r.errno.to_string(),
                    r.suppressed.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

/// Exit 1 (through `Error::Findings`) when anything was found, repaired or not.
pub(super) fn fsck(
    store: &Store,
    tenant: Option<TenantId>,
    repair: bool,
    json: bool,
) -> Result<()> {
    let tenants = selected(store, tenant)?;
    let reports = tenants
        .iter()
        .map(|t| crate::fsck::check(store, t, repair))
        .collect::<Result<Vec<_>>>()?;
    if json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            if r.clean() {
                println!("{}: clean ({} live mounts)", r.tenant, r.live_mounts);
            }
            for f in &r.findings {
                let how = match (r.repaired, f.recoverable) {
                    (true, _) => " [repaired]",
                    (false, true) => " [the next mount recovers it]",
                    (false, false) => "",
                };
                println!("{}: {}: {}{how}", r.tenant, f.kind, f.detail);
            }
        }
    }
    let found: usize = reports.iter().map(|r| r.findings.len()).sum();
    if found > 0 {
        return Err(Error::Findings(found));
    }
    Ok(())
}

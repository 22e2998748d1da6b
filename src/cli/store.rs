//! `tenantfs store`: what a whole store is kept in.

use std::path::PathBuf;

use clap::Subcommand;

use crate::error::Result;
use crate::store::{MetaSpec, Store};

#[derive(Subcommand)]
pub(super) enum StoreCmd {
    /// Move an embedded store's catalog and every tenant's metadata into an empty
    /// PostgreSQL database, in one transaction; content stays in the store directory.
    /// Refused while any tenant is mounted. The SQLite files are kept in
    /// STORE/migrated-sqlite/ until you remove them.
    Migrate {
        /// postgres://USER@HOST:PORT/DB, an empty database.
        #[arg(long, value_name = "URL")]
        to: String,
        /// A 0600 file holding the database password.
        #[arg(long, value_name = "FILE")]
        meta_password_file: Option<PathBuf>,
    },
}

pub(super) fn store(store: &Store, cmd: StoreCmd) -> Result<()> {
    match cmd {
        StoreCmd::Migrate {
            to,
            meta_password_file,
        } => {
            let spec = MetaSpec {
                url: to,
                password_file: meta_password_file.map(|p| super::absolute(&p)),
            };
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "moving rows {bar:40} {pos}/{len} ({eta} left)",
                )
                .expect("the template is valid"),
            );
            let moved = store.migrate_to(&spec, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let tenants = moved?;
            crate::say!(
                "moved {tenants} tenants to {}; content stays in {}; the SQLite files are in {}",
                Store::open(store.path())?.meta_location(),
                store.path().display(),
                store.path().join("migrated-sqlite").display()
            );
            Ok(())
        }
    }
}

//! Rule objects (alarms, channels) kept in the catalog for the rules runtime: stored and
//! dropped in one catalog commit each, then the manifest is rewritten so that
//! `wattdb recover` brings them back.

use crate::catalog::{CatalogOp, RuleEntry};
use crate::error::{Error, Result};

use super::Storage;

impl Storage {
    /// Rule objects of `kind`, by name.
    pub fn rules(&self, kind: &str) -> Vec<RuleEntry> {
        self.inner.catalog.rules(kind)
    }

    /// Store `entry`. With `create`, an existing rule of that kind and name is an error
    /// ([`Error::RuleExists`]); without, it must exist ([`Error::RuleNotFound`]) and is
    /// replaced.
    pub async fn put_rule(&self, entry: RuleEntry, create: bool) -> Result<()> {
        let catalog = self.inner.catalog.clone();
        tokio::task::spawn_blocking(move || {
            catalog.commit_checked(|state| {
                let exists = state
                    .rules
                    .contains_key(&(entry.kind.clone(), entry.name.clone()));
                match (create, exists) {
                    (true, true) => Err(Error::RuleExists {
                        kind: entry.kind.clone(),
                        name: entry.name.clone(),
                    }),
                    (false, false) => Err(Error::RuleNotFound {
                        kind: entry.kind.clone(),
                        name: entry.name.clone(),
                    }),
                    _ => Ok(vec![CatalogOp::PutRule(entry.clone())]),
                }
            })
        })
        .await??;
        self.write_manifest().await;
        Ok(())
    }

    /// Drop a rule object ([`Error::RuleNotFound`] when there is none).
    pub async fn drop_rule(&self, kind: &str, name: &str) -> Result<()> {
        let catalog = self.inner.catalog.clone();
        let (kind, name) = (kind.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || {
            catalog.commit_checked(|state| {
                if !state.rules.contains_key(&(kind.clone(), name.clone())) {
                    return Err(Error::RuleNotFound {
                        kind: kind.clone(),
                        name: name.clone(),
                    });
                }
                Ok(vec![CatalogOp::DropRule {
                    kind: kind.clone(),
                    name: name.clone(),
                }])
            })
        })
        .await??;
        self.write_manifest().await;
        Ok(())
    }
}

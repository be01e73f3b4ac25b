//! Transaction statements. wattdb has no multi-statement transactions: every statement
//! is applied — and a write is durable — when it completes. `BEGIN`, `COMMIT`,
//! `ROLLBACK` and savepoints are accepted so that drivers and ORMs that wrap work in
//! them run unchanged, and the transaction status the client sees follows PostgreSQL's
//! (in a block, failed block); `ROLLBACK` does not undo writes already made.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::sql::sqlparser::ast::Statement;
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::PgWireResult;
use pgwire::messages::response::TransactionStatus;

use super::sqlstate::{self, user_error};

/// A failed block rolled back to a savepoint is usable again. The wire protocol
/// library keeps reporting the failed status until the block ends (it decides the
/// status itself), so the session remembers it here.
#[derive(Default)]
pub struct BlockState {
    recovered: AtomicBool,
}

impl BlockState {
    pub fn of<C: ClientInfo + ?Sized>(client: &C) -> Arc<BlockState> {
        client
            .session_extensions()
            .get_or_insert_with(BlockState::default)
    }

    /// A statement failed: the block (if any) is failed again.
    pub fn failed_again(&self) {
        self.recovered.store(false, Ordering::Relaxed);
    }
}

/// Whether `client` is in a failed transaction block.
fn in_failed_block<C: ClientInfo + ?Sized>(client: &C) -> bool {
    client.transaction_status() == TransactionStatus::Error
        && !BlockState::of(client).recovered.load(Ordering::Relaxed)
}

/// The answer to a transaction statement, or the error for any other statement inside
/// a failed block; `None` for statements to run normally.
pub fn respond<C: ClientInfo + ?Sized>(
    client: &mut C,
    stmt: &Statement,
) -> Option<PgWireResult<Response>> {
    let failed = in_failed_block(client);
    if matches!(
        stmt,
        Statement::Commit { .. }
            | Statement::Rollback {
                savepoint: None,
                ..
            }
    ) {
        BlockState::of(client).failed_again();
    }
    let response = match stmt {
        Statement::StartTransaction { .. } => {
            if failed {
                return Some(Err(aborted()));
            }
            match client.transaction_status() {
                TransactionStatus::Idle => Response::TransactionStart(Tag::new("BEGIN")),
                // PostgreSQL warns and goes on.
                _ => Response::Execution(Tag::new("BEGIN")),
            }
        }
        Statement::Commit { .. } if client.transaction_status() == TransactionStatus::Error => {
            Response::TransactionEnd(Tag::new("ROLLBACK"))
        }
        Statement::Commit { .. } => Response::TransactionEnd(Tag::new("COMMIT")),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => {
            // Back to the savepoint: the block is usable again.
            if client.transaction_status() == TransactionStatus::Error {
                BlockState::of(client)
                    .recovered
                    .store(true, Ordering::Relaxed);
            }
            Response::Execution(Tag::new("ROLLBACK"))
        }
        Statement::Rollback { .. } => Response::TransactionEnd(Tag::new("ROLLBACK")),
        _ if failed => return Some(Err(aborted())),
        Statement::Savepoint { .. } => Response::Execution(Tag::new("SAVEPOINT")),
        Statement::ReleaseSavepoint { .. } => Response::Execution(Tag::new("RELEASE")),
        _ => return None,
    };
    Some(Ok(response))
}

/// `25P02` inside a failed block (for statements [`respond`] does not see: the user
/// statements).
pub fn refuse_in_failed_block<C: ClientInfo + ?Sized>(
    client: &C,
) -> pgwire::error::PgWireResult<()> {
    if in_failed_block(client) {
        return Err(aborted());
    }
    Ok(())
}

fn aborted() -> pgwire::error::PgWireError {
    user_error(
        sqlstate::IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// Whether `stmt` is a transaction statement (planned as an empty command).
pub fn is_transaction_statement(stmt: &Statement) -> bool {
    matches!(
        stmt,
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

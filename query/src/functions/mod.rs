//! SQL functions wattdb adds to DataFusion: TimescaleDB-style `time_bucket`, and `first` /
//! `last` aggregates by time. Both are rewritten during planning into DataFusion built-ins
//! (`date_bin`, `first_value`/`last_value` with `ORDER BY`), so they run at the same speed
//! and with the same semantics. `date_trunc` is replaced by a wrapper that is fast on UTC
//! timestamps. Full-text `matches()` and `score()`. Plus the few PostgreSQL functions
//! psql needs.

mod async_sort_keys;
mod date_trunc_utc;
mod first_last;
mod json_build_object;
pub mod like_escape;
mod matches;
mod pg_compat;
mod score;
mod time_bucket;

use std::sync::Arc;

use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

pub fn register(ctx: &SessionContext, storage: wattdb_storage::Storage) {
    ctx.register_udf(ScalarUDF::new_from_impl(time_bucket::TimeBucket::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(date_trunc_utc::DateTruncUtc::new()));
    ctx.register_udaf(AggregateUDF::new_from_impl(first_last::FirstLast::first()));
    ctx.register_udaf(AggregateUDF::new_from_impl(first_last::FirstLast::last()));
    ctx.register_udf(ScalarUDF::new_from_impl(
        json_build_object::JsonBuildObject::new(),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(matches::Matches::new()));
    ctx.register_udf(AsyncScalarUDF::new(Arc::new(score::Score::new(storage))).into_scalar_udf());
    ctx.add_analyzer_rule(Arc::new(async_sort_keys::AsyncSortKeys));
    ctx.register_udf(like_escape::udf());
    for udf in pg_compat::udfs() {
        ctx.register_udf(udf);
    }
}

//! Results printed in the session's time zone: `timestamptz` columns are re-labelled
//! with it before encoding (the instants are unchanged; a label is all a cast between
//! zones changes in Arrow), so `SET TIME ZONE 'Asia/Shanghai'` prints `+08` offsets.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, cast};
use datafusion::prelude::DataFrame;

/// `df` with its zoned timestamp columns in `zone`.
pub fn in_session_zone(df: DataFrame, zone: &str) -> Result<DataFrame> {
    let schema = df.schema().clone();
    let needs = schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(_, Some(z)) if z.as_ref() != zone));
    if !needs {
        return Ok(df);
    }
    let zone: Arc<str> = Arc::from(zone);
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(datafusion::common::Column::from((qualifier, field)));
            match field.data_type() {
                DataType::Timestamp(unit, Some(z)) if *z != zone => {
                    cast(column, DataType::Timestamp(*unit, Some(zone.clone()))).alias(field.name())
                }
                _ => column,
            }
        })
        .collect();
    df.select(exprs)
}

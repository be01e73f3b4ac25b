//! SQL type names of PostgreSQL's oid family in casts: `oid`, `regclass`, `regtype`, …
//! plan as int4 (datafusion-pg-catalog's type planner), and an array of them,
//! `oid[]`, as a list of int4 whose element is marked `oid` — so that a parameter cast
//! that way (`$1::oid[]`, asyncpg's type introspection) is described as `oid[]`
//! (1028), the type its driver has a codec for, not `int4[]`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;
use datafusion_postgres::arrow_pg::datatypes::PG_OID_ALIAS_KEY;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

#[derive(Debug, Default)]
pub struct OidTypePlanner;

fn is_oid(t: &SqlType) -> bool {
    matches!(t, SqlType::Custom(name, args)
        if args.is_empty() && name.0.last().and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("oid")))
}

impl TypePlanner for OidTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<Arc<Field>>> {
        use datafusion::sql::sqlparser::ast::ArrayElemTypeDef;
        if let SqlType::Array(
            ArrayElemTypeDef::SquareBracket(element, _) | ArrayElemTypeDef::AngleBracket(element),
        ) = sql_type
            && is_oid(element)
        {
            let element = Field::new_list_field(DataType::Int32, true)
                .with_metadata([(PG_OID_ALIAS_KEY.to_string(), "oid".to_string())].into());
            return Ok(Some(Arc::new(Field::new(
                "",
                DataType::List(Arc::new(element)),
                true,
            ))));
        }
        PgOidTypePlanner.plan_type_field(sql_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, Ident, ObjectName};

    fn oid() -> SqlType {
        SqlType::Custom(ObjectName::from(vec![Ident::new("oid")]), vec![])
    }

    #[test]
    fn an_array_of_oids_is_marked_oid() {
        let planned = OidTypePlanner
            .plan_type_field(&SqlType::Array(ArrayElemTypeDef::SquareBracket(
                Box::new(oid()),
                None,
            )))
            .unwrap()
            .expect("planned");
        let DataType::List(element) = planned.data_type() else {
            panic!("{planned:?}");
        };
        assert_eq!(element.data_type(), &DataType::Int32);
        assert_eq!(
            element.metadata().get(PG_OID_ALIAS_KEY).map(String::as_str),
            Some("oid")
        );
        let scalar = OidTypePlanner
            .plan_type_field(&oid())
            .unwrap()
            .expect("oid");
        assert_eq!(scalar.data_type(), &DataType::Int32);
        assert_eq!(
            OidTypePlanner.plan_type_field(&SqlType::Text).unwrap(),
            None
        );
    }
}

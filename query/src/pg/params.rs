//! Parameters of prepared statements: the types reported in ParameterDescription and
//! the decoding of bound values. Ported from datafusion-postgres 0.19 (`planner.rs` and
//! `handlers.rs`, Apache-2.0), whose session service wattdb replaced with its own.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field};
use datafusion::common::ParamValues;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::{
    PG_OID_ALIAS_KEY, into_pg_type, pg_type_for_alias_kind,
};
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::error::{PgWireError, PgWireResult};

fn api(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Placeholder types: a cast written around a placeholder (`$1::varchar`) is its type,
/// as in PostgreSQL; else what DataFusion inferred from where it is used.
fn inferred_types(plan: &LogicalPlan) -> PgWireResult<HashMap<String, Option<DataType>>> {
    let mut types = plan.get_parameter_types().map_err(api)?;
    let mut casts: HashMap<String, DataType> = HashMap::new();
    plan.apply(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::Cast(c) = e
                    && let Expr::Placeholder(ph) = &*c.expr
                {
                    casts.insert(ph.id.clone(), c.field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(api)?;
    for (id, t) in casts {
        types.insert(id, Some(t));
    }
    Ok(types)
}

fn placeholder_field(expr: &Expr) -> Option<(&str, &Field)> {
    let ph = match expr {
        Expr::Placeholder(ph) => ph,
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Placeholder(ph) => ph,
            _ => return None,
        },
        _ => return None,
    };
    Some((ph.id.as_str(), ph.field.as_deref()?))
}

/// The alias kind (`oid`, `regclass`, …) a field's metadata names.
fn alias_kind(field: &Field) -> Option<&str> {
    field.metadata().get(PG_OID_ALIAS_KEY).map(String::as_str)
}

/// `$1::oid[]` (asyncpg's type introspection): an array of oids, not of int4.
fn oid_array_cast(expr: &Expr) -> Option<&str> {
    let Expr::Cast(c) = expr else {
        return None;
    };
    let Expr::Placeholder(ph) = c.expr.as_ref() else {
        return None;
    };
    let DataType::List(element) = c.field.data_type() else {
        return None;
    };
    let kind = alias_kind(element).or_else(|| alias_kind(&c.field))?;
    (kind == "oid" && element.data_type() == &DataType::Int32).then_some(ph.id.as_str())
}

/// Placeholders compared with catalog `oid` columns are bound as `oid`, not `int4`.
fn override_types(plan: &LogicalPlan) -> HashMap<String, Type> {
    let mut out = HashMap::new();
    let _ = plan.apply(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Some(id) = oid_array_cast(e) {
                    out.insert(id.to_string(), Type::OID_ARRAY);
                } else if let Some((id, field)) = placeholder_field(e)
                    && field.data_type() == &DataType::Int32
                    && let Some(kind) = alias_kind(field)
                    && let Some(ty) = pg_type_for_alias_kind(kind)
                {
                    out.insert(id.to_string(), ty);
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// `$1, $2, …` in order, with their inferred types — every position up to the highest
/// one the plan uses, so that a placeholder the catalog rewrites dropped (it was in a
/// subquery answered with NULL) leaves a gap (`None`) instead of shifting the others.
fn ordered(types: HashMap<String, Option<DataType>>) -> Vec<(String, Option<DataType>)> {
    let index = |id: &str| id.trim_start_matches('$').parse::<usize>().ok();
    let Some(max) = types.keys().filter_map(|id| index(id)).max() else {
        return Vec::new();
    };
    (1..=max)
        .map(|i| {
            let id = format!("${i}");
            let t = types.get(&id).cloned().flatten();
            (id, t)
        })
        .collect()
}

/// The wire types of a statement's parameters (ParameterDescription).
pub fn wire_types(plan: &LogicalPlan) -> PgWireResult<Vec<Type>> {
    let overrides = override_types(plan);
    ordered(inferred_types(plan)?)
        .into_iter()
        .map(|(id, t)| match (overrides.get(&id), t) {
            (Some(ty), _) => Ok(ty.clone()),
            (None, Some(t)) => into_pg_type(&t),
            (None, None) => Ok(Type::UNKNOWN),
        })
        .collect()
}

/// The values bound to `portal`, decoded by the types its statement's plan gives them.
pub fn bound_values<S: Clone>(portal: &Portal<S>, plan: &LogicalPlan) -> PgWireResult<ParamValues> {
    let wire = wire_types(plan)?;
    let wire_refs: Vec<Option<&Type>> = wire.iter().map(Some).collect();
    let inferred: Vec<Option<DataType>> = ordered(inferred_types(plan)?)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let inferred_refs: Vec<Option<&DataType>> = inferred.iter().map(|t| t.as_ref()).collect();
    deserialize_parameters_with_server_types(portal, &inferred_refs, &wire_refs)
}

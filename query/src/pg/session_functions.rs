//! Functions that read or change the calling session's parameters:
//! `current_setting(name [, missing_ok])` and `set_config(name, value, is_local)`.
//! They are registered in each statement's context, bound to its connection's
//! [`SessionSettings`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::settings::SessionSettings;
use super::sqlstate::{self, user_error};

fn strings(args: &[ColumnarValue], i: usize) -> Result<Option<ArrayRef>> {
    let Some(arg) = args.get(i) else {
        return Ok(None);
    };
    let arrays = ColumnarValue::values_to_arrays(std::slice::from_ref(arg))?;
    Ok(Some(arrow::compute::cast(&arrays[0], &DataType::Utf8)?))
}

fn current_setting(
    settings: &SessionSettings,
    base: &ConfigOptions,
    args: &[ColumnarValue],
    n: usize,
) -> Result<ColumnarValue> {
    let names = strings(args, 0)?
        .ok_or_else(|| DataFusionError::Plan("current_setting needs a parameter name".into()))?;
    let names = names.as_string::<i32>();
    let missing_ok = match strings(args, 1)? {
        Some(a) => {
            let a = a.as_string::<i32>();
            (0..a.len()).any(|i| !a.is_null(i) && matches!(a.value(i), "true" | "t"))
        }
        None => false,
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let i = if names.len() == 1 { 0 } else { i };
        if names.is_null(i) {
            out.push(None);
            continue;
        }
        let name = names.value(i);
        match settings.get(name, base) {
            Some(v) => out.push(Some(v)),
            None if missing_ok => out.push(None),
            None => {
                return Err(DataFusionError::External(Box::new(user_error(
                    sqlstate::UNDEFINED_OBJECT,
                    format!("unrecognized configuration parameter \"{name}\""),
                ))));
            }
        }
    }
    Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
}

fn set_config(
    settings: &SessionSettings,
    args: &[ColumnarValue],
    n: usize,
) -> Result<ColumnarValue> {
    let (Some(names), Some(values)) = (strings(args, 0)?, strings(args, 1)?) else {
        return Err(DataFusionError::Plan(
            "set_config needs a name, a value and is_local".into(),
        ));
    };
    let (names, values) = (names.as_string::<i32>(), values.as_string::<i32>());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = |a: &arrow::array::StringArray| if a.len() == 1 { 0 } else { i };
        let (ni, vi) = (at(names), at(values));
        if names.is_null(ni) {
            return Err(DataFusionError::Plan(
                "set_config: the parameter name must not be null".into(),
            ));
        }
        let value = (!values.is_null(vi)).then(|| values.value(vi).to_string());
        let name = names.value(ni);
        let result = match &value {
            Some(v) => settings.set(name, v),
            None => settings.reset(name),
        };
        result.map_err(|e| DataFusionError::External(Box::new(e)))?;
        out.push(value);
    }
    Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
}

/// The arguments and the number of rows.
type Body = dyn Fn(&[ColumnarValue], usize) -> Result<ColumnarValue> + Send + Sync;

/// A function of the session: any arguments (cast to text inside), text out.
struct SessionFunction {
    name: &'static str,
    signature: Signature,
    body: Arc<Body>,
}

impl std::fmt::Debug for SessionFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFunction")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for SessionFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for SessionFunction {}

impl std::hash::Hash for SessionFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for SessionFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        (self.body)(&args.args, args.number_rows)
    }
}

fn function(
    name: &'static str,
    arities: &[usize],
    volatility: Volatility,
    body: Arc<Body>,
) -> ScalarUDF {
    let signature = Signature::one_of(
        arities.iter().map(|n| TypeSignature::Any(*n)).collect(),
        volatility,
    );
    ScalarUDF::new_from_impl(SessionFunction {
        name,
        signature,
        body,
    })
}

/// Register the session's functions in a statement's context.
pub fn register(ctx: &SessionContext, settings: Arc<SessionSettings>) {
    let base = Arc::new(ctx.state().config_options().as_ref().clone());
    let read = settings.clone();
    ctx.register_udf(function(
        "current_setting",
        &[1, 2],
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue], n| current_setting(&read, &base, args, n)),
    ));
    ctx.register_udf(function(
        "set_config",
        &[3],
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue], n| set_config(&settings, args, n)),
    ));
}

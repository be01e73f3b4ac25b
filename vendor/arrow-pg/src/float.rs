//! wattdb patch: `float8`/`float4` values printed as PostgreSQL prints them.
//!
//! pgwire prints the shortest round-trip digits with Ryu's layout: `229.0`, `1e20`,
//! `inf`. PostgreSQL (with its default `extra_float_digits = 1`) prints the same
//! shortest digits laid out like `%g`: `229`, `1e+20`, `1.5e-05`, `Infinity` — fixed
//! notation for decimal exponents −4…14 (float8; −4…5 for float4), scientific with a
//! signed two-digit exponent otherwise. With `extra_float_digits` ≤ 0 the value is
//! rounded to 15 + extra (float8) or 6 + extra (float4) significant digits, as pgwire
//! already did. Binary values are unchanged.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, Type};

/// A float8 (or float4 when `single`) value for PostgreSQL's text form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PgFloat {
    pub value: f64,
    pub single: bool,
}

/// The shortest decimal digits of `value` (no sign, no leading zeros) and the decimal
/// exponent of the first digit.
fn shortest(value: f64, single: bool) -> (String, i32) {
    let text = if single {
        format!("{:e}", value.abs() as f32)
    } else {
        format!("{:e}", value.abs())
    };
    let (mantissa, exp) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// PostgreSQL's text of a finite, non-zero value from its digits and exponent.
fn layout(negative: bool, digits: &str, exp: i32, max_fixed_exp: i32) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    let n = digits.len() as i32;
    if (-4..=max_fixed_exp).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(digits);
        } else if exp + 1 >= n {
            out.push_str(digits);
            for _ in 0..(exp + 1 - n) {
                out.push('0');
            }
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
    }
    out
}

/// The text PostgreSQL prints for `value` with `extra_float_digits`.
pub fn pg_float_text(value: f64, single: bool, extra_float_digits: i8) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let max_fixed_exp = if single { 5 } else { 14 };
    if extra_float_digits > 0 {
        let (digits, exp) = shortest(value, single);
        return layout(value < 0.0, &digits, exp, max_fixed_exp);
    }
    // %.{p}g with p = DBL_DIG/FLT_DIG + extra.
    let precision = (if single { 6 } else { 15 } + i32::from(extra_float_digits)).max(1);
    let text = format!("{:.*e}", (precision - 1) as usize, value.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    layout(value < 0.0, digits, exp, precision - 1)
}

impl ToSql for PgFloat {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if self.single {
            (self.value as f32).to_sql(ty, out)
        } else {
            self.value.to_sql(ty, out)
        }
    }

    postgres_types::accepts!(FLOAT4, FLOAT8);
    postgres_types::to_sql_checked!();
}

impl ToSqlText for PgFloat {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_slice(
            pg_float_text(self.value, self.single, format_options.extra_float_digits).as_bytes(),
        );
        Ok(IsNull::No)
    }
}

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

/// A small stack buffer `{:e}` is formatted into (an `f64` needs at most 24 bytes).
struct StackText {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The shortest decimal digits of `value` (no sign, no leading zeros) into `digits`,
/// their count, and the decimal exponent of the first digit. No allocation: this runs
/// for every float a query or a COPY prints.
fn shortest(value: f64, single: bool, digits: &mut [u8; 32]) -> (usize, i32) {
    use std::fmt::Write;
    let mut text = StackText {
        buf: [0; 32],
        len: 0,
    };
    let written = if single {
        write!(text, "{:e}", value.abs() as f32)
    } else {
        write!(text, "{:e}", value.abs())
    };
    if written.is_err() {
        return (0, 0);
    }
    let text = &text.buf[..text.len];
    let (mantissa, exp) = match text.iter().position(|b| *b == b'e') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &b"0"[..]),
    };
    let mut n = 0;
    for b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        digits[n] = *b;
        n += 1;
    }
    let exp = std::str::from_utf8(exp)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    (n, exp)
}

/// PostgreSQL's text of a finite, non-zero value from its digits and exponent,
/// appended to `out`.
fn layout_into<B: BufMut>(
    out: &mut B,
    negative: bool,
    digits: &[u8],
    exp: i32,
    max_fixed_exp: i32,
) {
    if negative {
        out.put_u8(b'-');
    }
    let n = digits.len() as i32;
    if (-4..=max_fixed_exp).contains(&exp) {
        if exp < 0 {
            out.put_slice(b"0.");
            for _ in 0..(-exp - 1) {
                out.put_u8(b'0');
            }
            out.put_slice(digits);
        } else if exp + 1 >= n {
            out.put_slice(digits);
            for _ in 0..(exp + 1 - n) {
                out.put_u8(b'0');
            }
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            out.put_slice(int);
            out.put_u8(b'.');
            out.put_slice(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.put_slice(first);
        if !rest.is_empty() {
            out.put_u8(b'.');
            out.put_slice(rest);
        }
        out.put_u8(b'e');
        out.put_u8(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.put_u8(b'0');
        }
        out.put_slice(e.to_string().as_bytes());
    }
}

/// Append the text PostgreSQL prints for `value` with `extra_float_digits` to `out`.
pub fn write_pg_float<B: BufMut>(out: &mut B, value: f64, single: bool, extra_float_digits: i8) {
    if value.is_nan() {
        out.put_slice(b"NaN");
        return;
    }
    if value.is_infinite() {
        out.put_slice(if value > 0.0 {
            b"Infinity"
        } else {
            b"-Infinity"
        });
        return;
    }
    if value == 0.0 {
        out.put_slice(if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        });
        return;
    }
    let max_fixed_exp = if single { 5 } else { 14 };
    if extra_float_digits > 0 {
        let mut digits = [0u8; 32];
        let (n, exp) = shortest(value, single, &mut digits);
        layout_into(out, value < 0.0, &digits[..n], exp, max_fixed_exp);
        return;
    }
    // %.{p}g with p = DBL_DIG/FLT_DIG + extra.
    let precision = (if single { 6 } else { 15 } + i32::from(extra_float_digits)).max(1);
    let text = format!("{:.*e}", (precision - 1) as usize, value.abs());
    let (mantissa, exp) = text.split_once('e').unwrap_or((text.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: Vec<u8> = mantissa.bytes().filter(|c| c.is_ascii_digit()).collect();
    let mut end = digits.len();
    while end > 1 && digits[end - 1] == b'0' {
        end -= 1;
    }
    layout_into(out, value < 0.0, &digits[..end], exp, precision - 1);
}

/// The text PostgreSQL prints for `value` with `extra_float_digits`.
pub fn pg_float_text(value: f64, single: bool, extra_float_digits: i8) -> String {
    let mut out = Vec::with_capacity(24);
    write_pg_float(&mut out, value, single, extra_float_digits);
    String::from_utf8(out).unwrap_or_default()
}

impl ToSql for PgFloat {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
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
        write_pg_float(
            out,
            self.value,
            self.single,
            format_options.extra_float_digits,
        );
        Ok(IsNull::No)
    }
}

//! The patched float text encoder (vendor/arrow-pg `float.rs`) prints what PostgreSQL 15
//! prints: every expected string below is PostgreSQL 15's `v::text` for the same value
//! (psql against a PostgreSQL 15 server on this machine), with the default
//! `extra_float_digits = 1` and with `0`.

use arrow_pg::float::pg_float_text;

#[test]
fn float8_as_postgres_prints_it() {
    let cases: &[(f64, &str)] = &[
        (229.0, "229"),
        (230.5, "230.5"),
        (0.1, "0.1"),
        (1e14, "100000000000000"),
        (1e15, "1e+15"),
        (123456789012345.6, "123456789012345.6"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (1.5e-5, "1.5e-05"),
        (-2.25e300, "-2.25e+300"),
        (1.0 / 3.0, "0.3333333333333333"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
        (f64::NAN, "NaN"),
        (-0.0, "-0"),
        (1e6, "1000000"),
        (123456.7, "123456.7"),
        (1234567.8, "1234567.8"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
    ];
    for (v, want) in cases {
        assert_eq!(pg_float_text(*v, false, 1), *want, "{v:e}");
    }
}

#[test]
fn float4_as_postgres_prints_it() {
    let cases: &[(f32, &str)] = &[
        (229.0, "229"),
        (230.5, "230.5"),
        (0.1, "0.1"),
        (1e5, "100000"),
        (1e6, "1e+06"),
        (123456.7, "123456.7"),
        (1234567.8, "1.2345678e+06"),
        (1e-5, "1e-05"),
        (1.0 / 3.0, "0.33333334"),
    ];
    for (v, want) in cases {
        assert_eq!(pg_float_text(f64::from(*v), true, 1), *want, "{v:e}");
    }
}

#[test]
fn fewer_digits_when_extra_float_digits_is_zero() {
    let cases: &[(f64, &str)] = &[
        (0.1, "0.1"),
        (1.0 / 3.0, "0.333333333333333"),
        (229.0, "229"),
        (1e15, "1e+15"),
        (123456789012345.6, "123456789012346"),
    ];
    for (v, want) in cases {
        assert_eq!(pg_float_text(*v, false, 0), *want, "{v:e}");
    }
}

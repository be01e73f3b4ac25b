//! Statement limits, checked before a statement is planned: its size in bytes, the depth
//! of its expressions and its node count. A statement past one of them is refused with
//! `54001` ("statement too complex") in time linear in its size, before anything that
//! recurses over it or is quadratic in its depth (DataFusion names every expression by
//! printing it, so a chain of 50,000 `+` took minutes to plan).
//!
//! Two checks, both linear:
//! - [`check_text`] before parsing: the size, and a scan of the tokens that bounds from
//!   above how deep an operator chain can nest. The SQL parser limits the nesting of
//!   parentheses, function calls and CASE (`54001` from its recursion limit), but a chain
//!   of infix operators (`1+1+…`, `a OR b OR …`, `x::t::t…`) is parsed in a loop into an
//!   arbitrarily deep left-leaning tree, which later walks (rewrites, drops) recurse over.
//!   The scan refuses chains far beyond the depth limit before such a tree exists.
//! - [`check_statement`] after parsing: the exact expression depth and node count.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, Query, Select, Statement, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use pgwire::error::{PgWireError, PgWireResult};

use super::sqlstate::{self, user_error};

/// The limits a statement must keep (server settings `max_statement_bytes`,
/// `max_expression_depth`, `max_statement_nodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementLimits {
    /// Longest statement text, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of expressions and subqueries.
    pub max_depth: usize,
    /// Most expressions and subqueries in one statement.
    pub max_nodes: usize,
}

impl StatementLimits {
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
    /// DataFusion's planning is quadratic in an operator chain's depth: 500 plans in
    /// ~0.3 s (BENCHMARKS.md), 1000 in ~1.1 s.
    pub const DEFAULT_MAX_DEPTH: usize = 500;
    /// Planning costs ~5–10 µs per expression: a 100,000-item `IN` list passes.
    pub const DEFAULT_MAX_NODES: usize = 200_000;
}

/// PostgreSQL's limit on a SELECT list (`MaxTupleAttributeNumber`), kept for the same
/// reason here: DataFusion's planning is quadratic in the number of select items (1,664
/// plan in ~0.45 s, 16,000 took 30 s).
pub const MAX_TARGET_LIST: usize = 1664;

/// PostgreSQL's limit on a function call's arguments (`FUNC_MAX_ARGS`), kept for the
/// same reason: DataFusion plans a call of 100,000 arguments (`concat(…)`) in seconds,
/// naming the call by printing its arguments in each planner pass. `COALESCE`,
/// `GREATEST` and `LEAST` are expressions in PostgreSQL, not functions, and take any
/// number.
pub const MAX_FUNCTION_ARGUMENTS: usize = 100;

/// Whether `function` is one of the expressions PostgreSQL writes like a function call
/// but does not limit to [`MAX_FUNCTION_ARGUMENTS`].
fn any_number_of_arguments(function: &datafusion::sql::sqlparser::ast::Function) -> bool {
    function
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| {
            ["coalesce", "greatest", "least"]
                .iter()
                .any(|n| i.value.eq_ignore_ascii_case(n))
        })
}

impl Default for StatementLimits {
    fn default() -> Self {
        StatementLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_nodes: Self::DEFAULT_MAX_NODES,
        }
    }
}

/// How many operators one chain may hold, per unit of the depth limit, before the token
/// scan refuses it: an operator chain's depth is at most its operator count, and at least
/// about a quarter of it in any ordinary shape (`a = 1 OR a = 2 …`: a half; `x BETWEEN 1
/// AND 2 AND …`: a third). Chains the scan lets through are then checked exactly.
const OPERATORS_PER_DEPTH: usize = 4;

fn too_complex(what: String) -> PgWireError {
    user_error(
        sqlstate::STATEMENT_TOO_COMPLEX,
        format!("statement too complex: {what}"),
    )
}

/// The size of `sql` and the operator chains in it, before it is parsed.
pub fn check_text(sql: &str, limits: &StatementLimits) -> PgWireResult<()> {
    if sql.len() > limits.max_bytes {
        return Err(too_complex(format!(
            "{} bytes is longer than max_statement_bytes ({})",
            sql.len(),
            limits.max_bytes
        )));
    }
    // Nesting past the depth limit takes more brackets, and a chain past its bound more
    // operators, than a statement this short has characters: nothing to scan.
    if sql.len() <= limits.max_depth {
        return Ok(());
    }
    // A statement the tokenizer refuses is left to the parser, which says why.
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let bound = limits.max_depth.saturating_mul(OPERATORS_PER_DEPTH);
    let (chain, nesting) = longest_operator_chain(&tokens, bound);
    if nesting > limits.max_depth {
        return Err(too_complex(format!(
            "brackets and CASE nest deeper than max_expression_depth ({})",
            limits.max_depth
        )));
    }
    if chain > bound {
        return Err(too_complex(format!(
            "an expression chains more than {bound} operators (max_expression_depth is {})",
            limits.max_depth
        )));
    }
    Ok(())
}

/// An upper bound of how deep operator chains nest in `tokens` (stops counting past
/// `stop`), and the deepest nesting of brackets and CASE. Each bracket level (parentheses, brackets, CASE … END) counts the operators
/// of its current segment — segments end at commas and clause keywords — and a closed
/// level adds its largest segment to the enclosing one, since a bracketed group can be an
/// operand deep inside the enclosing chain.
fn longest_operator_chain(tokens: &[Token], stop: usize) -> (usize, usize) {
    struct Level {
        current: usize,
        largest: usize,
    }
    let mut levels = vec![Level {
        current: 0,
        largest: 0,
    }];
    let mut longest = 0;
    let mut nesting = 0;
    for token in tokens {
        let top = levels.len() - 1;
        match token {
            Token::LParen | Token::LBracket => levels.push(Level {
                current: 0,
                largest: 0,
            }),
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::CASE => {
                levels.push(Level {
                    current: 0,
                    largest: 0,
                })
            }
            Token::RParen | Token::RBracket => longest = longest.max(close(&mut levels)),
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::END => {
                longest = longest.max(close(&mut levels))
            }
            Token::Comma | Token::SemiColon => levels[top].current = 0,
            Token::Word(w) if w.quote_style.is_none() && ends_segment(w.keyword) => {
                levels[top].current = 0
            }
            t if is_operator(t) => {
                let level = &mut levels[top];
                level.current += 1;
                level.largest = level.largest.max(level.current);
                longest = longest.max(level.current);
            }
            _ => {}
        }
        nesting = nesting.max(levels.len() - 1);
        if longest > stop {
            return (longest, nesting);
        }
    }
    return (longest, nesting);

    /// Ends the innermost level; returns the enclosing level's count.
    fn close(levels: &mut Vec<Level>) -> usize {
        if levels.len() > 1
            && let Some(inner) = levels.pop()
            && let Some(outer) = levels.last_mut()
        {
            outer.current += inner.largest;
            outer.largest = outer.largest.max(outer.current);
            return outer.current;
        }
        0
    }
}

/// Keywords that end one expression and start another at the same level.
fn ends_segment(keyword: Keyword) -> bool {
    matches!(
        keyword,
        Keyword::SELECT
            | Keyword::FROM
            | Keyword::WHERE
            | Keyword::GROUP
            | Keyword::HAVING
            | Keyword::ORDER
            | Keyword::LIMIT
            | Keyword::OFFSET
            | Keyword::WHEN
            | Keyword::THEN
            | Keyword::ELSE
            | Keyword::ON
            | Keyword::JOIN
            | Keyword::UNION
            | Keyword::INTERSECT
            | Keyword::EXCEPT
            | Keyword::VALUES
            | Keyword::SET
            | Keyword::RETURNING
            | Keyword::WINDOW
            | Keyword::QUALIFY
    )
}

/// Tokens that can join two operands into one expression (or extend one).
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::AND
                        | Keyword::OR
                        | Keyword::XOR
                        | Keyword::NOT
                        | Keyword::IS
                        | Keyword::LIKE
                        | Keyword::ILIKE
                        | Keyword::SIMILAR
                        | Keyword::IN
                        | Keyword::BETWEEN
                        | Keyword::COLLATE
                        | Keyword::AT
                        | Keyword::OVERLAPS
                        | Keyword::ESCAPE
                )
        }
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::LBracket
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::SemiColon
        | Token::Period
        | Token::Placeholder(_)
        | Token::Colon => false,
        t => !is_literal(t),
    }
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// The exact depth and node count of a parsed statement.
pub fn check_statement(statement: &Statement, limits: &StatementLimits) -> PgWireResult<()> {
    let mut walk = Measure {
        limits: *limits,
        depth: 0,
        nodes: 0,
    };
    match statement.visit(&mut walk) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(Exceeded::Depth) => Err(too_complex(format!(
            "expressions nest deeper than max_expression_depth ({})",
            limits.max_depth
        ))),
        ControlFlow::Break(Exceeded::Nodes) => Err(too_complex(format!(
            "more than max_statement_nodes ({}) expressions",
            limits.max_nodes
        ))),
        ControlFlow::Break(Exceeded::TargetList) => Err(user_error(
            sqlstate::TOO_MANY_COLUMNS,
            format!("target lists can have at most {MAX_TARGET_LIST} entries"),
        )),
        ControlFlow::Break(Exceeded::Arguments(name)) => Err(user_error(
            sqlstate::TOO_MANY_ARGUMENTS,
            format!(
                "cannot pass more than {MAX_FUNCTION_ARGUMENTS} arguments to a function ({name})"
            ),
        )),
    }
}

enum Exceeded {
    Depth,
    Nodes,
    TargetList,
    /// The function called with too many arguments.
    Arguments(String),
}

/// Counts expressions and queries and their nesting; stops at the first limit passed,
/// so the walk never recurses deeper than the depth limit.
struct Measure {
    limits: StatementLimits,
    depth: usize,
    nodes: usize,
}

impl Measure {
    fn enter(&mut self) -> ControlFlow<Exceeded> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > self.limits.max_depth {
            return ControlFlow::Break(Exceeded::Depth);
        }
        if self.nodes > self.limits.max_nodes {
            return ControlFlow::Break(Exceeded::Nodes);
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<Exceeded> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Measure {
    type Break = Exceeded;

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Exceeded> {
        if let Expr::Function(f) = expr
            && let FunctionArguments::List(list) = &f.args
            && list.args.len() > MAX_FUNCTION_ARGUMENTS
            && !any_number_of_arguments(f)
        {
            return ControlFlow::Break(Exceeded::Arguments(f.name.to_string()));
        }
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Exceeded> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<Exceeded> {
        self.enter()
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Exceeded> {
        if select.projection.len() > MAX_TARGET_LIST {
            return ControlFlow::Break(Exceeded::TargetList);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Exceeded> {
        self.leave()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn limits(depth: usize, nodes: usize) -> StatementLimits {
        StatementLimits {
            max_bytes: 1 << 20,
            max_depth: depth,
            max_nodes: nodes,
        }
    }

    fn code(r: PgWireResult<()>) -> Option<String> {
        r.err().map(|e| match e {
            PgWireError::UserError(info) => info.code.clone(),
            other => format!("{other}"),
        })
    }

    fn chain(op: &str, n: usize) -> String {
        let mut s = "SELECT 1".to_string();
        for _ in 0..n {
            s.push_str(op);
            s.push('1');
        }
        s
    }

    fn parsed(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0)
    }

    #[test]
    fn long_chains_are_refused_by_the_token_scan() {
        let l = limits(100, 1_000_000);
        assert_eq!(code(check_text(&chain("+", 300), &l)), None);
        assert_eq!(
            code(check_text(&chain("+", 401), &l)).as_deref(),
            Some("54001")
        );
        // Chains in separate select items, IN-list items or CASE branches do not add up.
        let items: Vec<String> = (0..50).map(|_| "1+1+1+1+1+1+1+1+1+1".into()).collect();
        let wide = format!("SELECT {}", items.join(", "));
        assert_eq!(code(check_text(&wide, &l)), None);
        let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        let in_list = format!("SELECT * FROM t WHERE x IN ({})", list.join(","));
        assert_eq!(code(check_text(&in_list, &l)), None);
        // A parenthesised chain at the end of another chain adds to it.
        let nested = format!("{} + ({})", chain("+", 250), &chain("+", 250)[7..]);
        assert_eq!(code(check_text(&nested, &l)).as_deref(), Some("54001"));
        // So does one inside CASE … END.
        let case = format!(
            "{} + CASE WHEN true THEN {} END",
            chain("+", 250),
            &chain("+", 250)[7..]
        );
        assert_eq!(code(check_text(&case, &l)).as_deref(), Some("54001"));
        // Nesting: brackets and CASE deeper than the depth limit.
        let deep = format!("SELECT {}1{}", "(".repeat(101), ")".repeat(101));
        assert_eq!(code(check_text(&deep, &l)).as_deref(), Some("54001"));
        let cases = format!(
            "SELECT {}0{}",
            "CASE WHEN x THEN 1 ELSE ".repeat(101),
            " END".repeat(101)
        );
        assert_eq!(code(check_text(&cases, &l)).as_deref(), Some("54001"));
        let shallow = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(code(check_text(&shallow, &l)), None);
        // Operators inside string literals are not operators.
        let literal = format!("SELECT '{}'", "+".repeat(10_000));
        assert_eq!(code(check_text(&literal, &l)), None);
    }

    #[test]
    fn size_is_checked_first() {
        let l = StatementLimits {
            max_bytes: 100,
            ..StatementLimits::default()
        };
        assert_eq!(code(check_text(&"x".repeat(100), &l)), None);
        assert_eq!(
            code(check_text(&"x".repeat(101), &l)).as_deref(),
            Some("54001")
        );
    }

    #[test]
    fn exact_depth_and_nodes_after_parsing() {
        let l = limits(100, 1000);
        // 1+1+…+1 with n operators nests n+1 expressions (the SELECT's query is one more).
        assert_eq!(code(check_statement(&parsed(&chain("+", 98)), &l)), None);
        assert_eq!(
            code(check_statement(&parsed(&chain("+", 99)), &l)).as_deref(),
            Some("54001")
        );
        // Long flat OR lists: depth is the number of ORs.
        let ors: Vec<String> = (0..150).map(|i| format!("a = {i}")).collect();
        let or_list = format!("SELECT * FROM t WHERE {}", ors.join(" OR "));
        assert_eq!(
            code(check_statement(&parsed(&or_list), &l)).as_deref(),
            Some("54001")
        );
        // Many shallow expressions: the node count.
        let items: Vec<String> = (0..600).map(|i| format!("{i} + 1")).collect();
        let wide = format!("SELECT {}", items.join(", "));
        assert_eq!(
            code(check_statement(&parsed(&wide), &l)).as_deref(),
            Some("54001")
        );
        let items: Vec<String> = (0..300).map(|i| format!("{i} + 1")).collect();
        let wide = format!("SELECT {}", items.join(", "));
        assert_eq!(code(check_statement(&parsed(&wide), &l)), None);
        // A SELECT list longer than PostgreSQL's 1664 entries: 54011.
        let l = limits(100, 1_000_000);
        let items = |n: usize| {
            let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("SELECT {}", v.join(", "))
        };
        assert_eq!(code(check_statement(&parsed(&items(1664)), &l)), None);
        assert_eq!(
            code(check_statement(&parsed(&items(1665)), &l)).as_deref(),
            Some("54011")
        );
    }

    #[test]
    fn a_function_takes_at_most_100_arguments_as_in_postgresql() {
        let l = limits(100, 1_000_000);
        let call = |f: &str, n: usize| {
            let v: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("SELECT {f}({})", v.join(", "))
        };
        assert_eq!(
            code(check_statement(&parsed(&call("concat", 100)), &l)),
            None
        );
        for f in ["concat", "pg_catalog.concat", "json_build_array"] {
            assert_eq!(
                code(check_statement(&parsed(&call(f, 101)), &l)).as_deref(),
                Some("54023"),
                "{f}"
            );
        }
        // Nested in a query, too.
        let nested = format!("SELECT 1 WHERE 'x' IN ({})", &call("concat", 101)[7..]);
        assert_eq!(
            code(check_statement(&parsed(&nested), &l)).as_deref(),
            Some("54023")
        );
        // Expressions in PostgreSQL, not functions: any number.
        for f in ["coalesce", "COALESCE", "greatest", "least"] {
            assert_eq!(
                code(check_statement(&parsed(&call(f, 500)), &l)),
                None,
                "{f}"
            );
        }
    }
}

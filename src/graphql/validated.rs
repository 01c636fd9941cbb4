//! Validation results kept: a client sends the same few documents over and over, and the
//! engine's validation (some twenty rules walking the document against the schema) cost a
//! `holdSeats` more than its store call did. A document that passed once passes again — the
//! rules read the document and the schema, which do not change — unless the variables changed
//! what they check: the values are checked against their declared types.
//!
//! So a result is kept under the document (the parse cache's key), the operation
//! chosen and the variables' **signature**: everything of the values that the rules could look
//! at. For a variable of type `ID`, `String`, `Boolean` or `Float` that is the value's kind
//! alone (the rules accept any string as an `ID`; the value itself is checked when it is used,
//! as always); for any other type (`Int`, enums, input objects, custom scalars) the whole value.
//! Lists are followed item by item, `null` and a missing value are told apart. Two requests
//! with the same key get the same verdict from the rules, so only what passed is kept, and
//! anything that failed is validated afresh (and fails the same way, with the same message).
//!
//! What this rests on (async-graphql 7.2): of the rules, only `ArgumentsOfCorrectType` reads
//! variable values (against the declared type's `is_valid`: any string is an `ID` or a
//! `String`); complexity and depth are counted from the document alone, because no field of
//! our schema has a complexity function (`#[graphql(complexity = …)]`). A field that gains one
//! makes complexity depend on its arguments' values: its variables would then have to be in the
//! signature whole, or the limit could be passed on a kept result.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use async_graphql::extensions::{ExtensionContext, NextValidation};
use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationDefinition, Type,
};
use async_graphql::Positioned;
use async_graphql::{Name, ServerError, ValidationResult, Value, Variables};

/// Results kept before the cache starts over (distinct documents × operations × signatures).
const KEPT: usize = 4096;

/// `graphql_validations_total` (`kept`, `validated`), its handles looked up once
/// (see `telemetry::Series`).
static VALIDATIONS: LazyLock<(metrics::Counter, metrics::Counter)> = LazyLock::new(|| {
    (
        metrics::counter!("graphql_validations_total", "source" => "kept"),
        metrics::counter!("graphql_validations_total", "source" => "validated"),
    )
});

/// The validation results kept, shared by every request (the schema's extension calls it through
/// `super::documents`).
#[derive(Default)]
pub struct Validations {
    kept: Mutex<HashMap<String, ValidationResult>>,
}

/// What one request's validation checks first, and the key its result is kept under; found
/// once its document is parsed (`check`).
#[derive(Default)]
pub struct Check {
    /// A required variable the request left out: the engine's rules do not look, and would let
    /// a mutation's first fields run before the one that reads it fails.
    missing: Option<String>,
    /// `None`: the document is not one the parse cache keeps; validate as usual.
    key: Option<String>,
}

/// A request's `Check`: its parsed document, `operationName`, the key the parse cache keeps the
/// document under (if it does) and its variables.
pub fn check(
    doc: &ExecutableDocument,
    name: Option<&str>,
    document: Option<&str>,
    variables: &Variables,
) -> Check {
    let Some(op) = operation(doc, name) else {
        return Check::default();
    };
    Check {
        missing: missing(op, variables),
        key: document.map(|d| key(d, op, name, variables)),
    }
}

impl Validations {
    /// The `validation` hook: a required variable left out is refused; a kept result answers
    /// for the engine's rules; a fresh one that passes is kept.
    pub async fn validate(
        &self,
        check: Check,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        if let Some(message) = check.missing {
            return Err(vec![ServerError::new(message, None)]);
        }
        let Some(key) = check.key else {
            return next.run(ctx).await;
        };
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        if let Some(result) = kept {
            VALIDATIONS.0.increment(1);
            return Ok(result);
        }
        VALIDATIONS.1.increment(1);
        let result = next.run(ctx).await?;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(key, result);
        Ok(result)
    }
}

/// The operation that runs: the one named, or the only one. `None` when there is none such
/// (the engine reports it).
fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), None) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// The first variable of a required type, without a default, that the request left out — as
/// the GraphQL specification's variable coercion refuses it, before anything runs.
fn missing(op: &Positioned<OperationDefinition>, variables: &Variables) -> Option<String> {
    op.node.variable_definitions.iter().find_map(|def| {
        let def = &def.node;
        let required = !def.var_type.node.nullable && def.default_value.is_none();
        (required && !variables.contains_key(&def.name.node)).then(|| {
            format!(
                "variable ${} of required type {} was not provided",
                def.name.node, def.var_type.node
            )
        })
    })
}

/// The key of a request's validation: its document, the operation that runs and its variables'
/// signature.
fn key(
    document: &str,
    op: &Positioned<OperationDefinition>,
    name: Option<&str>,
    variables: &Variables,
) -> String {
    let mut key = String::with_capacity(document.len() + 32);
    key.push_str(document);
    key.push('\0');
    key.push_str(name.unwrap_or(""));
    key.push('\0');
    for def in &op.node.variable_definitions {
        let name: &Name = &def.node.name.node;
        match variables.get(name) {
            Some(value) => signature(&mut key, &def.node.var_type.node, value),
            None => key.push('-'),
        }
        key.push(',');
    }
    key
}

/// What of `value` the validation rules can see, for a variable declared as `ty`.
fn signature(out: &mut String, ty: &Type, value: &Value) {
    match (&ty.base, value) {
        (_, Value::Null) => out.push('n'),
        (BaseType::List(item), Value::List(items)) => {
            out.push('[');
            for v in items {
                signature(out, item, v);
            }
            out.push(']');
        }
        // A single value where a list is declared is taken as a list of one.
        (BaseType::List(item), v) => {
            out.push('1');
            signature(out, item, v);
        }
        (BaseType::Named(name), v) => {
            let kind = match (name.as_str(), v) {
                ("ID" | "String", Value::String(_)) => Some('s'),
                ("ID", Value::Number(n)) if n.is_i64() => Some('i'),
                ("Float", Value::Number(_)) => Some('f'),
                ("Boolean", Value::Boolean(_)) => Some('b'),
                _ => None,
            };
            match kind {
                Some(k) => out.push(k),
                None => {
                    // The whole value, its length first so that no two values read alike.
                    let text = v.to_string();
                    let _ = write!(out, "v{}:{text}", text.len());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(query: &str, name: Option<&str>, variables: serde_json::Value) -> Option<String> {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        let op = operation(&doc, name)?;
        Some(key("doc", op, name, &Variables::from_json(variables)))
    }

    #[test]
    fn a_required_variable_left_out_is_named() {
        let doc = async_graphql::parser::parse_query(HOLD).expect("parses");
        let op = operation(&doc, None).expect("one operation");
        let missing_of = |v: serde_json::Value| missing(op, &Variables::from_json(v));
        assert_eq!(
            missing_of(serde_json::json!({"show": "1"})).as_deref(),
            Some("variable $seats of required type [ID!]! was not provided")
        );
        // Given (even as null, which the rules refuse), optional or defaulted: not missing.
        assert_eq!(
            missing_of(serde_json::json!({"show": "1", "seats": null})),
            None
        );
        assert_eq!(
            missing_of(serde_json::json!({"show": "1", "seats": []})),
            None
        );
        let doc = async_graphql::parser::parse_query("query($n: Int! = 3) { __typename }")
            .expect("parses");
        let op = operation(&doc, None).expect("one operation");
        assert_eq!(missing(op, &Variables::default()), None);
    }

    const HOLD: &str =
        "mutation($show: ID!, $seats: [ID!]!, $n: Int) { holdSeats(showId: $show, seatIds: $seats) { id } }";

    #[test]
    fn values_the_rules_accept_alike_share_a_key() {
        let a = key_of(
            HOLD,
            None,
            serde_json::json!({"show": "1", "seats": ["a", "b"]}),
        );
        let b = key_of(
            HOLD,
            None,
            serde_json::json!({"show": "2", "seats": ["c", "d"]}),
        );
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn anything_the_rules_could_tell_apart_has_a_key_of_its_own() {
        let base = serde_json::json!({"show": "1", "seats": ["a"]});
        let variants = [
            serde_json::json!({"show": 1, "seats": ["a"]}),
            serde_json::json!({"show": 1.5, "seats": ["a"]}),
            serde_json::json!({"show": null, "seats": ["a"]}),
            serde_json::json!({"seats": ["a"]}),
            serde_json::json!({"show": "1", "seats": ["a", "b"]}),
            serde_json::json!({"show": "1", "seats": "a"}),
            serde_json::json!({"show": "1", "seats": [null]}),
            serde_json::json!({"show": "1", "seats": [["a"]]}),
            serde_json::json!({"show": "1", "seats": [{"a": 1}]}),
            serde_json::json!({"show": "1", "seats": ["a"], "n": 1}),
            serde_json::json!({"show": "1", "seats": ["a"], "n": 4_000_000_000i64}),
            serde_json::json!({"show": "1", "seats": ["a"], "n": "1"}),
        ];
        let base = key_of(HOLD, None, base);
        let mut seen = vec![base.clone()];
        for v in variants {
            let k = key_of(HOLD, None, v.clone());
            assert!(!seen.contains(&k), "{v} shares a key with another");
            seen.push(k);
        }
        // Different whole values of a type checked by value: different keys.
        let one = key_of(
            HOLD,
            None,
            serde_json::json!({"show": "1", "seats": [], "n": 1}),
        );
        let two = key_of(
            HOLD,
            None,
            serde_json::json!({"show": "1", "seats": [], "n": 2}),
        );
        assert_ne!(one, two);
    }

    #[test]
    fn the_operation_is_part_of_the_key() {
        let doc = "query A { __typename } query B { __typename }";
        assert!(key_of(doc, None, serde_json::json!({})).is_none());
        assert!(key_of(doc, Some("C"), serde_json::json!({})).is_none());
        assert_ne!(
            key_of(doc, Some("A"), serde_json::json!({})),
            key_of(doc, Some("B"), serde_json::json!({}))
        );
        assert!(key_of("{ __typename }", Some("A"), serde_json::json!({})).is_none());
    }
}

//! JSON Schemas of `validation` policies, compiled the same way by the compiler (which
//! reports a schema that does not compile on its field) and the proxy (which compiles
//! each one once per table).

/// A compiled schema.
pub use jsonschema::Validator;

/// Compiles a schema: JSON Schema 2020-12 unless `$schema` names another draft,
/// `format` asserted. References resolve only inside the schema: nothing is fetched
/// from the network or the file system.
pub fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    let mut options = jsonschema::options().should_validate_formats(true);
    if schema.get("$schema").is_none() {
        options = options.with_draft(jsonschema::Draft::Draft202012);
    }
    options.build(schema).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn compiles_valid_schemas_and_refuses_others() {
        assert!(super::compile(&json!({"type": "object"})).is_ok());
        assert!(super::compile(&json!(true)).is_ok());
        assert!(super::compile(&json!({"type": 12})).is_err());
        // An external reference is not fetched: it does not compile.
        assert!(super::compile(&json!({"$ref": "https://example.com/s.json"})).is_err());
    }
}

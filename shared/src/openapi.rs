//! Building blocks for the services' OpenAPI documents (each service
//! writes its own paths and schemas with these).

use serde_json::{json, Map, Value};

/// An object schema with these required properties (each given its schema).
pub fn object(props: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    let properties: Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    json!({"type": "object", "required": required, "properties": properties})
}

/// The members of several JSON objects in one (later ones win).
pub fn merged(parts: impl IntoIterator<Item = Value>) -> Value {
    let mut all = Map::new();
    for part in parts {
        if let Value::Object(m) = part {
            all.extend(m);
        }
    }
    Value::Object(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_requires_each_property_and_merging_keeps_every_member() {
        let o = object(&[("id", json!({"type": "string"}))]);
        assert_eq!(o["required"], json!(["id"]));
        assert_eq!(o["properties"]["id"]["type"], "string");
        let m = merged([json!({"a": 1}), json!({"b": 2}), json!("not an object")]);
        assert_eq!(m, json!({"a": 1, "b": 2}));
    }
}

//! Shorthands for building the results document with serde_json: `Json::obj`,
//! `Json::str` and `Json::num` (non-finite numbers become `null`).

pub use serde_json::Value as Json;

pub trait JsonExt {
    fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json;
    fn str(s: impl Into<String>) -> Json;
    fn num(x: impl Into<f64>) -> Json;
}

impl JsonExt for Json {
    fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    fn str(s: impl Into<String>) -> Json {
        Json::String(s.into())
    }

    fn num(x: impl Into<f64>) -> Json {
        serde_json::Number::from_f64(x.into()).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::{Json, JsonExt as _};

    #[test]
    fn builds_nested_values() {
        let value = Json::obj([
            ("name", Json::str("a\"b\n")),
            (
                "xs",
                Json::Array(vec![Json::num(1.0), Json::num(2.5), Json::num(f64::NAN)]),
            ),
            ("ok", Json::Bool(true)),
        ]);
        // Keys come out sorted (serde_json without preserve_order).
        assert_eq!(
            value.to_string(),
            r#"{"name":"a\"b\n","ok":true,"xs":[1.0,2.5,null]}"#
        );
    }
}

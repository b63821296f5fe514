//! The top level of an OpenAI chat request body, seen without decoding the rest.
//!
//! The fast path (OpenAI format in, OpenAI-compatible provider out) must forward every field
//! exactly as sent, including ones we have never heard of, and change only `model`. So the body
//! is split into its top-level fields, each kept as the raw JSON text the client sent; only the
//! fields the gateway acts on are decoded. Re-encoding writes the raw text back.

use crate::error::GatewayError;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A JSON object's top-level fields, in order, values as raw JSON text.
#[derive(Debug)]
pub struct RawObject<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// What the gateway needs from a chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
}

impl<'a> RawObject<'a> {
    /// Splits `body` into fields; a body that is not a JSON object is a 400.
    pub fn parse(body: &'a [u8]) -> Result<Self, GatewayError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let fields = de.deserialize_map(FieldsVisitor).map_err(|e| {
            if e.is_data() {
                // Valid JSON of another type (`[…]`, a string).
                return GatewayError::invalid_request(format!(
                    "The request body must be a JSON object ({e})."
                ))
                .with_code("invalid_json");
            }
            GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
                .with_code("invalid_json")
        })?;
        de.end().map_err(|e| {
            GatewayError::invalid_request(format!("The request body is not valid JSON: {e}."))
                .with_code("invalid_json")
        })?;
        Ok(RawObject { fields })
    }

    /// The raw value of field `name` (the last one, if a client sent it twice).
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// Checks the fields every chat request needs and reads the ones routing uses.
    pub fn chat_summary(&self) -> Result<ChatSummary, GatewayError> {
        let model = match self.get("model") {
            None => return Err(GatewayError::invalid_param("model", "`model` is required.")),
            Some(raw) => match serde_json::from_str::<String>(raw.get()) {
                Ok(m) if !m.trim().is_empty() => m,
                Ok(_) => {
                    return Err(GatewayError::invalid_param(
                        "model",
                        "`model` must not be empty.",
                    ))
                }
                Err(_) => {
                    return Err(GatewayError::invalid_param(
                        "model",
                        "`model` must be a string.",
                    ))
                }
            },
        };
        match self.get("messages").map(|r| r.get().as_bytes()) {
            None => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "`messages` is required.",
                ))
            }
            Some([b'[', rest @ ..]) => {
                if rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b']') {
                    return Err(GatewayError::invalid_param(
                        "messages",
                        "`messages` must contain at least one message.",
                    ));
                }
            }
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "messages",
                    "`messages` must be an array.",
                ))
            }
        }
        let stream = match self.get("stream").map(RawValue::get) {
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    "stream",
                    "`stream` must be a boolean.",
                ))
            }
        };
        let include_usage = self
            .get("stream_options")
            .and_then(|r| serde_json::from_str::<StreamOptions>(r.get()).ok())
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        Ok(ChatSummary {
            model,
            stream,
            include_usage,
        })
    }

    /// The object re-encoded for a provider: `model` set to `model`, the gateway's own
    /// `providerOptions` left out, every other field as sent.
    pub fn to_json_with_model(&self, model: &str) -> Vec<u8> {
        self.to_json_for(model, Some)
    }

    /// [`Self::to_json_with_model`], each other top-level field written under the name
    /// `rename` gives it (`None`: left out), for providers whose API names or lacks a field.
    pub fn to_json_for<'k>(
        &'k self,
        model: &str,
        rename: impl Fn(&'k str) -> Option<&'k str>,
    ) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + model.len() + 2);
        out.push(b'{');
        let mut wrote_model = false;
        for (key, value) in &self.fields {
            if key == GATEWAY_ONLY {
                continue;
            }
            if key == "model" {
                if wrote_model {
                    continue; // a repeated key: keep one
                }
                wrote_model = true;
            }
            let key: &str = if key == "model" {
                key
            } else {
                match rename(key) {
                    Some(k) => k,
                    None => continue,
                }
            };
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key).expect("a string serializes");
            out.push(b':');
            if key == "model" {
                serde_json::to_writer(&mut out, model).expect("a string serializes");
            } else {
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        out.push(b'}');
        out
    }
}

impl RawObject<'_> {
    /// The object written back, without the fields `keep` turns down, the `replace` field's
    /// value swapped for the given raw JSON; every other byte as it was.
    fn write(&self, out: &mut Vec<u8>, keep: impl Fn(&str) -> bool, replace: (&str, &[u8])) {
        out.push(b'{');
        let mut first = true;
        for (key, value) in &self.fields {
            if !keep(key) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, key.as_ref()).expect("a string serializes");
            out.push(b':');
            if key == replace.0 {
                out.extend_from_slice(replace.1);
            } else {
                out.extend_from_slice(value.get().as_bytes());
            }
        }
        out.push(b'}');
    }
}

/// `body` (a chat request) with the fields `fields` taken out of its `messages`, every other
/// byte as sent (key order, numbers). `None`: no message holds one, or the body is not one the
/// gateway parsed.
pub fn without_message_fields(body: &[u8], fields: &[&str]) -> Option<Vec<u8>> {
    let top = RawObject::parse(body).ok()?;
    let messages: Vec<&RawValue> = serde_json::from_str(top.get("messages")?.get()).ok()?;
    let mut array = Vec::with_capacity(body.len());
    array.push(b'[');
    let mut changed = false;
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        match RawObject::parse(m.get().as_bytes()) {
            Ok(message) if fields.iter().any(|f| message.get(f).is_some()) => {
                changed = true;
                message.write(&mut array, |k| !fields.contains(&k), ("", b""));
            }
            _ => array.extend_from_slice(m.get().as_bytes()),
        }
    }
    array.push(b']');
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(array.len() + body.len() / 4);
    top.write(&mut out, |_| true, ("messages", &array));
    Some(out)
}

/// The most JSON values a provider's answer, error or stream event may hold to be parsed
/// (turned into a tree of the isolate's memory, 16 bytes or more a value against 2 or 3 of
/// text): an answer the gateway translates holds far fewer (logprobs are not translated).
pub const MAX_PROVIDER_VALUES: usize = 100_000;

/// Whether a provider's `json` holds more than [`MAX_PROVIDER_VALUES`]; only texts over 64 KiB
/// are counted (a smaller one cannot make a tree that matters), so the usual event costs nothing.
pub fn too_complex(json: &[u8]) -> bool {
    json.len() > 64 * 1024 && json_values(json) > MAX_PROVIDER_VALUES
}

/// The failure for a provider's `what` ("an answer", "a stream event") that is [`too_complex`]:
/// a 502 (the caller names the provider), so another attempt may serve.
pub fn too_complex_error(what: &str) -> crate::error::GatewayError {
    crate::error::GatewayError::bad_gateway(format!(
        "The provider sent {what} of more than {MAX_PROVIDER_VALUES} JSON values, more than the \
         gateway parses."
    ))
}

/// About how many values `json` holds (objects and arrays, and the members and elements in
/// them), counted without parsing it: what turning it into a tree will cost. Text inside
/// strings is not counted.
pub fn json_values(json: &[u8]) -> usize {
    let mut n = 1;
    let mut i = 0;
    while let Some(&b) = json.get(i) {
        i += 1;
        match b {
            b',' | b'{' | b'[' => n += 1,
            b'"' => {
                // A string: skip to its closing quote, past escapes.
                loop {
                    let Some(j) = json.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r))
                    else {
                        return n;
                    };
                    i += j + 1;
                    if json[i - 1] == b'"' {
                        break;
                    }
                    i += 1; // the escaped character
                }
            }
            _ => {}
        }
    }
    n
}

/// The request field meant for the gateway alone, never forwarded.
const GATEWAY_ONLY: &str = "providerOptions";

#[derive(serde::Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Key(k)) = map.next_key()? {
            fields.push((k, map.next_value::<&RawValue>()?));
        }
        Ok(fields)
    }
}

/// A key borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_values_are_counted_outside_strings() {
        use super::json_values;
        assert_eq!(json_values(b"1"), 1);
        // {, [, three elements' commas and the members' comma, {}: about the values there are.
        assert_eq!(json_values(br#"{"a":[1,2,3],"b":{}}"#), 7);
        assert_eq!(json_values(br#"{"a":"x,y{[\",z"}"#), 2);
        assert_eq!(json_values(br#"{"a":"\\","b":[1]}"#), 4);
        assert_eq!(json_values(br#"{"a":"unterminated,,,"#), 2);
        assert_eq!(json_values(br#""\"#), 1);
        let many = format!("[{}]", vec!["0"; 1000].join(","));
        assert_eq!(json_values(many.as_bytes()), 1001);
    }

    use super::*;
    use serde_json::{json, Value};

    fn summary(body: &str) -> Result<ChatSummary, GatewayError> {
        RawObject::parse(body.as_bytes())?.chat_summary()
    }

    #[test]
    fn reads_model_stream_and_include_usage() {
        let s = summary(
            r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            ChatSummary {
                model: "openai/gpt-4o".into(),
                stream: true,
                include_usage: true
            }
        );
        let s = summary(r#"{"model":"x/y","messages":[{}],"stream":null}"#).unwrap();
        assert!(!s.stream && !s.include_usage);
    }

    #[test]
    fn names_the_missing_or_wrong_field() {
        let param = |b: &str| summary(b).unwrap_err().param;
        assert_eq!(param(r#"{"messages":[{}]}"#).as_deref(), Some("model"));
        assert_eq!(
            param(r#"{"model":7,"messages":[{}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(r#"{"model":" ","messages":[{}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(param(r#"{"model":"a/b"}"#).as_deref(), Some("messages"));
        assert_eq!(
            param(r#"{"model":"a/b","messages":{}}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(r#"{"model":"a/b","messages":[ ]}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(r#"{"model":"a/b","messages":[{}],"stream":"yes"}"#).as_deref(),
            Some("stream")
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_400s() {
        for body in ["{", "", "[]", "\"x\"", "{\"model\":1} trailing", "{\"a\":}"] {
            let e = RawObject::parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 400, "{body:?}");
            assert_eq!(e.code.as_deref(), Some("invalid_json"));
        }
        let e = RawObject::parse(b"[1]").unwrap_err();
        assert!(e
            .message
            .starts_with("The request body must be a JSON object"));
    }

    #[test]
    fn rewrites_only_the_model_and_keeps_every_other_byte() {
        let body = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"h\u00e9"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}},"strict":true}}],"tool_choice":"auto","seed":42,"logprobs":true,"n":2,"response_format":{"type":"json_object"},"some_vendor_field":{"a":1.50,"b":[1e3]},"esc\"aped":1}"#;
        let obj = RawObject::parse(body.as_bytes()).unwrap();
        let out = obj.to_json_with_model("gpt-4o-2024-08-06");
        let expected = body.replacen("openai/gpt-4o", "gpt-4o-2024-08-06", 1);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn whitespace_between_fields_is_normalised_but_values_are_not() {
        let body = "{ \"model\" : \"a/b\" ,\n \"messages\": [ {\"role\": \"user\"} ] }";
        let out = RawObject::parse(body.as_bytes())
            .unwrap()
            .to_json_with_model("b");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!({"model": "b", "messages": [{"role": "user"}]}));
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("[ {\"role\": \"user\"} ]"));
    }

    #[test]
    fn provider_options_stay_in_the_gateway() {
        let obj = RawObject::parse(
            br#"{"model":"a/b","providerOptions":{"gateway":{"order":["x"]}},"messages":[1]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&obj.to_json_with_model("b")).unwrap();
        assert_eq!(v, json!({"model": "b", "messages": [1]}));
    }

    #[test]
    fn a_repeated_model_key_is_written_once() {
        let obj = RawObject::parse(br#"{"model":"a","model":"b/c","messages":[1]}"#).unwrap();
        assert_eq!(
            obj.chat_summary().unwrap().model,
            "b/c",
            "the last one wins, as in JSON.parse"
        );
        let v: Value = serde_json::from_slice(&obj.to_json_with_model("c")).unwrap();
        assert_eq!(v, json!({"model": "c", "messages": [1]}));
    }
}

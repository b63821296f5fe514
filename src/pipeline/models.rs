//! `GET /v1/models` and `GET /v1/models/{id}`: the catalog in OpenAI's shape, with the fields a
//! gateway user needs (context window, output limit, prices per token, serving providers).

use crate::catalog::{self, Model, Pricing};
use crate::error::GatewayError;
use serde::Serialize;

#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    /// The catalog has no release dates; 0 like other gateways that do not know.
    created: u64,
    owned_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    pricing: PricingObject<'a>,
    providers: Vec<&'a str>,
    capabilities: Vec<&'static str>,
}

#[derive(Serialize)]
struct PricingObject<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write: Option<&'a str>,
}

fn object(m: &Model) -> ModelObject<'_> {
    let p: &Pricing = m.pricing();
    let c = &m.capabilities;
    let capabilities = [
        (c.tools, "tools"),
        (c.vision, "vision"),
        (c.pdf, "pdf"),
        (c.reasoning, "reasoning"),
    ]
    .into_iter()
    .filter_map(|(has, name)| has.then_some(name))
    .collect();
    ModelObject {
        id: m.id,
        object: "model",
        created: 0,
        owned_by: m.owned_by,
        context_window: m.context_window,
        max_tokens: m.max_output_tokens,
        pricing: PricingObject {
            input: p.input,
            output: p.output,
            cache_read: p.cache_read,
            cache_write: p.cache_write,
        },
        providers: m.offers.iter().map(|o| o.provider).collect(),
        capabilities,
    }
}

/// The whole list, `{"object":"list","data":[…]}`. Rendered once per isolate by the caller.
pub fn render_list() -> Vec<u8> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<ModelObject<'a>>,
    }
    serde_json::to_vec(&List {
        object: "list",
        data: catalog::all().iter().map(object).collect(),
    })
    .expect("the catalog serializes")
}

/// One model by id (percent-decoded), or 404 `model_not_found`.
pub fn render_one(id: &str) -> Result<Vec<u8>, GatewayError> {
    let m = catalog::find(id).ok_or_else(|| GatewayError::model_not_found(id))?;
    Ok(serde_json::to_vec(&object(m)).expect("a model serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn the_list_has_every_catalog_model_in_openai_shape() {
        let v: Value = serde_json::from_slice(&render_list()).unwrap();
        assert_eq!(v["object"], "list");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), catalog::all().len());
        let sonnet = data
            .iter()
            .find(|m| m["id"] == "anthropic/claude-sonnet-4-6")
            .unwrap();
        assert_eq!(sonnet["object"], "model");
        assert_eq!(sonnet["owned_by"], "anthropic");
        assert!(sonnet["context_window"].as_u64().unwrap() >= 200_000);
        assert!(sonnet["max_tokens"].as_u64().unwrap() > 0);
        assert_eq!(sonnet["pricing"]["input"], "0.000003");
        assert_eq!(sonnet["pricing"]["output"], "0.000015");
        assert_eq!(sonnet["providers"][0], "anthropic");
        assert!(sonnet["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "vertex"));
        assert!(sonnet["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "tools"));
    }

    #[test]
    fn one_model_by_id_or_a_404() {
        let v: Value = serde_json::from_slice(&render_one("openai/gpt-4o").unwrap()).unwrap();
        assert_eq!(v["id"], "openai/gpt-4o");
        assert_eq!(v["pricing"]["input"], "0.0000025");
        let e = render_one("openai/nope").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("model_not_found"));
    }
}

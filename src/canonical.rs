//! The canonical chat types: OpenAI Chat Completions, typed.
//!
//! Clients speak OpenAI chat, so a request is parsed once into [`ChatRequest`] and each provider
//! translator builds its native body from it. Responses come back the other way: translators
//! produce a [`ChatResponse`] (non-streaming) or a sequence of [`StreamPart`]s (streaming), and
//! the one OpenAI encoder (`crate::formats::openai`) writes them out.
//!
//! Parsing is strict where silence would mislead: an unknown top-level field is kept in
//! [`ChatRequest::extra`] so a translator can refuse it, and the reasoning options refuse unknown
//! keys.
//!
//! ## Reasoning options accepted
//!
//! * `reasoning_effort`: `none`, `minimal`, `low`, `medium`, `high` (OpenAI).
//! * `reasoning: {"max_tokens": N}` (OpenRouter style), optionally `"effort"` or
//!   `"enabled": false`.
//! * `thinking: {"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}` (Anthropic
//!   style, as LiteLLM and others forward it).
//!
//! [`ChatRequest::reasoning`] folds them into one [`Reasoning`]; an explicit token budget wins
//! over an effort level.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::GatewayError;

/// An OpenAI chat completion request.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// OpenRouter-style reasoning options.
    #[serde(default)]
    pub reasoning: Option<ReasoningOptions>,
    /// Anthropic-style thinking options.
    #[serde(default)]
    pub thinking: Option<ThinkingOptions>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub logit_bias: Option<Map<String, Value>>,
    #[serde(default)]
    pub user: Option<String>,
    /// OpenAI's successor to `user` for abuse detection; taken like `user` where it is absent.
    #[serde(default)]
    pub safety_identifier: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Every other top-level field, for translators to refuse.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message, tagged by `role`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: Content,
    },
    Developer {
        content: Content,
    },
    User {
        content: Content,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Option<Vec<ToolCall>>,
        /// A refusal the model gave earlier: sent back as the turn's text, like a `refusal`
        /// content part.
        #[serde(default)]
        refusal: Option<String>,
        /// A reference to an earlier audio answer: no translated provider can take it back.
        #[serde(default)]
        audio: Option<Value>,
        /// The reasoning the gateway returned with this turn (`reasoning_details`), sent back so
        /// the provider continues from it (Claude's signed thinking before its tool calls).
        /// Read leniently: an item the gateway cannot use (another shape, a client's own) is
        /// skipped, never a reason to refuse the request.
        #[serde(default, deserialize_with = "lenient_details")]
        reasoning_details: Vec<InboundReasoningDetail>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

/// A piece of the model's reasoning the provider needs back whole and unchanged to continue
/// from it: Anthropic's signed thinking and its redacted thinking, Gemini's thought signature of
/// a function call. Clients see it as `reasoning_details` (`reasoning.text` with a `signature`,
/// `reasoning.encrypted` with `data`, and the tool call's `id` for Gemini; `format`
/// `anthropic-claude-v1` or `google-gemini-v1`), the shape OpenRouter and the Vercel AI Gateway
/// use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasoningDetail {
    Text {
        text: String,
        signature: String,
    },
    Encrypted {
        data: String,
    },
    /// Gemini's `thoughtSignature` on the function call the response names `id`.
    ToolCallSignature {
        id: String,
        data: String,
    },
}

/// The `format` of the reasoning details Claude's API takes back.
pub const ANTHROPIC_REASONING_FORMAT: &str = "anthropic-claude-v1";
/// The `format` of the thought signatures Gemini's API takes back.
pub const GEMINI_REASONING_FORMAT: &str = "google-gemini-v1";

/// One item of an assistant message's `reasoning_details` as a client sends it back: items of
/// other types or formats (another provider's) are kept out of the translation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum InboundReasoningDetail {
    #[serde(rename = "reasoning.text")]
    Text {
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        format: Option<String>,
        /// Streamed, a block comes in pieces sharing its index (the signature in the last).
        #[serde(default)]
        index: Option<u64>,
    },
    #[serde(rename = "reasoning.encrypted")]
    Encrypted {
        #[serde(default)]
        data: Option<String>,
        #[serde(default)]
        format: Option<String>,
        /// The tool call a Gemini thought signature belongs to.
        #[serde(default)]
        id: Option<String>,
    },
    #[serde(other)]
    Other,
}

/// `reasoning_details` as far as it can be used: the items of an array that parse.
fn lenient_details<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<InboundReasoningDetail>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(match value {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|item| serde_json::from_value(item).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// Whether `given` names the format `want`: once, or repeated whole, as the OpenAI Python SDK's
/// stream helper leaves it (it joins every string field of the pieces it merges by `index`,
/// `format` included, so a block streamed in N pieces comes back with it N times).
fn is_format(given: &str, want: &str) -> bool {
    !given.is_empty()
        && given.len().is_multiple_of(want.len())
        && given
            .as_bytes()
            .chunks(want.len())
            .all(|c| c == want.as_bytes())
}

/// Claude's thinking among `items` as Claude takes it back, in order: a `reasoning.text`
/// block kept as streamed (its pieces, then its signature, under one `index`) or whole; only
/// signed blocks, and redacted ones. An item without `format`, as some clients keep them, is
/// taken as Claude's; one naming a tool call (`id`) is Gemini's.
pub fn anthropic_thinking(items: &[InboundReasoningDetail]) -> Vec<ReasoningDetail> {
    let claude = |f: &Option<String>| {
        f.as_deref()
            .is_none_or(|f| is_format(f, ANTHROPIC_REASONING_FORMAT))
    };
    let mut out = Vec::new();
    // The text block being put together: (its index, text so far, signature).
    let mut open: Option<(Option<u64>, String, Option<String>)> = None;
    let close = |open: &mut Option<(Option<u64>, String, Option<String>)>,
                 out: &mut Vec<ReasoningDetail>| {
        if let Some((_, text, Some(signature))) = open.take() {
            out.push(ReasoningDetail::Text { text, signature });
        }
    };
    for item in items {
        match item {
            InboundReasoningDetail::Text {
                text,
                signature,
                format,
                index,
            } if claude(format) => {
                // A piece of the block under way (no signature yet; the same index, or none
                // given on either side) adds to it.
                let same = matches!(&open, Some((i, _, None))
                    if i == index || i.is_none() || index.is_none());
                if !same {
                    close(&mut open, &mut out);
                    open = Some((*index, String::new(), None));
                }
                let (_, whole, sig) = open.as_mut().expect("opened above");
                whole.push_str(text.as_deref().unwrap_or_default());
                if let Some(s) = signature.as_ref().filter(|s| !s.is_empty()) {
                    *sig = Some(s.clone());
                }
            }
            InboundReasoningDetail::Encrypted {
                data: Some(data),
                format,
                id: None,
            } if claude(format) && !data.is_empty() => {
                close(&mut open, &mut out);
                out.push(ReasoningDetail::Encrypted { data: data.clone() });
            }
            _ => {}
        }
    }
    close(&mut open, &mut out);
    out
}

impl InboundReasoningDetail {
    /// Gemini's thought signature for the tool call `call_id`, if this is it (the `format`
    /// may be missing: the call's id says whose it is).
    pub fn gemini_signature_for(&self, call_id: &str) -> Option<&str> {
        match self {
            InboundReasoningDetail::Encrypted {
                data: Some(data),
                format,
                id: Some(id),
            } if format
                .as_deref()
                .is_none_or(|f| is_format(f, GEMINI_REASONING_FORMAT))
                && id == call_id
                && !data.is_empty() =>
            {
                Some(data)
            }
            _ => None,
        }
    }
}

/// Message content: a plain string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Content {
    /// All text of the content joined, or an error naming the first non-text part.
    pub fn text_only(&self, param: &str) -> Result<String, GatewayError> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => {
                let mut out = String::new();
                for p in parts {
                    match p {
                        ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                            out.push_str(text)
                        }
                        other => {
                            return Err(GatewayError::invalid_param(
                                param,
                                format!(
                                    "Only text content is allowed here, not `{}`.",
                                    other.kind()
                                ),
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    File { file: FileRef },
    InputAudio { input_audio: InputAudio },
    Refusal { refusal: String },
}

impl ContentPart {
    /// The part's OpenAI `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ContentPart::Text { .. } => "text",
            ContentPart::ImageUrl { .. } => "image_url",
            ContentPart::File { .. } => "file",
            ContentPart::InputAudio { .. } => "input_audio",
            ContentPart::Refusal { .. } => "refusal",
        }
    }
}

/// An image: an `http(s)` URL or a `data:` URL.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A file part: inline as a data URL, or an uploaded file's id.
#[derive(Debug, Clone, Deserialize)]
pub struct FileRef {
    #[serde(default)]
    pub file_data: Option<String>,
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
}

/// Base64 audio with its format (`wav`, `mp3`).
#[derive(Debug, Clone, Deserialize)]
pub struct InputAudio {
    pub data: String,
    pub format: String,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function a tool call names, with its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// A tool the model may call. Only `function` tools exist in chat completions.
#[derive(Debug, Clone, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

/// A function declaration.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    /// Force this function.
    Function(String),
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Named {
            function: NamedFn,
        }
        #[derive(Deserialize)]
        struct NamedFn {
            name: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Mode(String),
            Named(Named),
        }
        match Raw::deserialize(d)? {
            Raw::Mode(m) => match m.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                other => Err(serde::de::Error::custom(format!(
                    "unknown tool_choice `{other}` (expected none, auto, required or a function)"
                ))),
            },
            Raw::Named(n) => Ok(ToolChoice::Function(n.function.name)),
        }
    }
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    /// The stop sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        self.as_slice().to_vec()
    }

    /// The stop sequences, borrowed.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Stop::One(s) => std::slice::from_ref(s),
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`. (`include_obfuscation` asks OpenAI to pad its chunks; the gateway's
/// translated chunks carry no padding, so it is taken and has nothing to do.)
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// OpenAI's `reasoning_effort` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    /// OpenAI's level above `high`: Claude models that have it take it (Opus 4.7 and later);
    /// elsewhere it is `high`, the most those take.
    #[serde(rename = "xhigh")]
    XHigh,
}

impl ReasoningEffort {
    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::None => "none",
            ReasoningEffort::Minimal => "minimal",
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
            ReasoningEffort::XHigh => "xhigh",
        }
    }

    /// The thinking-token budget the gateway uses for this level on budget-based providers.
    pub fn budget_tokens(self) -> u64 {
        match self {
            ReasoningEffort::None => 0,
            ReasoningEffort::Minimal => 1024,
            ReasoningEffort::Low => 2048,
            ReasoningEffort::Medium => 8192,
            // (Gemini 2.5 Flash takes at most 24,576: `xhigh` asks for no more than `high`.)
            ReasoningEffort::High | ReasoningEffort::XHigh => 16384,
        }
    }
}

/// `reasoning: {...}` (OpenRouter style).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasoningOptions {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub effort: Option<ReasoningEffort>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `thinking: {...}` (Anthropic style).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThinkingOptions {
    #[serde(rename = "type")]
    pub kind: ThinkingKind,
    #[serde(default)]
    pub budget_tokens: Option<u64>,
    /// Anthropic's `display` (`summarized`/`omitted`): taken without effect (the gateway asks
    /// for the summary and returns reasoning text whenever the provider sends it).
    #[serde(default)]
    pub display: Option<ThinkingDisplay>,
}

/// `thinking.display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingDisplay {
    Summarized,
    Omitted,
}

/// `thinking.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThinkingKind {
    Enabled,
    Disabled,
    /// The model decides how much to think (Claude 4.6 and later); Anthropic's default depth
    /// for it is `high`.
    Adaptive,
}

/// What the request asks of the model's reasoning, all options folded together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// Nothing asked: the provider's default.
    Default,
    /// Reasoning explicitly off.
    Off,
    /// An effort level.
    Effort(ReasoningEffort),
    /// An explicit token budget.
    Budget(u64),
}

/// `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl JsonSchemaFormat {
    /// The schema to send (a 400 without one), carrying the format's `description` (what the
    /// output is for, a hint to the model) when the schema has none of its own.
    pub fn schema_for_provider(&self) -> Result<Value, GatewayError> {
        let mut schema = self.schema.clone().ok_or_else(|| {
            GatewayError::invalid_param("response_format", "`json_schema.schema` is required.")
        })?;
        if let (Some(d), Some(obj)) = (&self.description, schema.as_object_mut()) {
            obj.entry("description")
                .or_insert_with(|| Value::String(d.clone()));
        }
        Ok(schema)
    }
}

impl ChatRequest {
    /// About how many JSON values the strings a translator parses hold: tool calls'
    /// `arguments`, and tool results that look like JSON when `tool_results` (Gemini parses
    /// them; see [`crate::chat_body::json_values`]).
    pub fn embedded_json_values(&self, tool_results: bool) -> usize {
        let json_like = |t: &str| {
            let t = t.trim_start();
            if tool_results && (t.starts_with('{') || t.starts_with('[')) {
                crate::chat_body::json_values(t.as_bytes())
            } else {
                0
            }
        };
        let text = |c: &Content| match c {
            Content::Text(t) => json_like(t),
            // The parts are joined before parsing: their text counts only if the whole does.
            Content::Parts(parts) => {
                let starts_json = parts.iter().find_map(|p| match p {
                    ContentPart::Text { text } if !text.trim().is_empty() => {
                        Some(json_like(text) > 0)
                    }
                    _ => None,
                });
                if starts_json == Some(true) {
                    parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => {
                                crate::chat_body::json_values(text.as_bytes())
                            }
                            _ => 0,
                        })
                        .sum()
                } else {
                    0
                }
            }
        };
        self.messages
            .iter()
            .map(|m| match m {
                Message::Assistant { tool_calls, .. } => tool_calls
                    .iter()
                    .flatten()
                    .map(|tc| crate::chat_body::json_values(tc.function.arguments.as_bytes()))
                    .sum(),
                Message::Tool { content, .. } => text(content),
                _ => 0,
            })
            .sum()
    }

    /// Parses a request body, mapping JSON errors to a 400 that names the field in `param`.
    pub fn from_json(body: &[u8]) -> Result<Self, GatewayError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                GatewayError::invalid_request(format!("Invalid chat request: {inner}"))
            } else {
                GatewayError::invalid_param(
                    &path,
                    format!("Invalid chat request at `{path}`: {inner}"),
                )
            }
        })?;
        de.end()
            .map_err(|e| GatewayError::invalid_request(format!("Invalid chat request: {e}")))?;
        Ok(parsed)
    }

    /// Who the end user is, for the provider's abuse detection: `user`, else `safety_identifier`.
    pub fn end_user(&self) -> Option<&str> {
        self.user.as_deref().or(self.safety_identifier.as_deref())
    }

    /// The output-token limit: `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// The field [`Self::max_output_tokens`] came from, for errors about it.
    pub fn max_output_tokens_param(&self) -> &'static str {
        if self.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        }
    }

    /// The field an explicit reasoning budget ([`Reasoning::Budget`]) came from.
    pub fn reasoning_budget_param(&self) -> &'static str {
        if self.thinking.is_some() {
            "thinking.budget_tokens"
        } else {
            "reasoning.max_tokens"
        }
    }

    /// True when the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The reasoning options folded into one; an explicit budget wins over an effort level.
    pub fn reasoning(&self) -> Reasoning {
        if let Some(t) = &self.thinking {
            return match (t.kind, t.budget_tokens) {
                (ThinkingKind::Disabled, _) => Reasoning::Off,
                (ThinkingKind::Enabled, Some(b)) => Reasoning::Budget(b),
                (ThinkingKind::Enabled, None) => Reasoning::Effort(ReasoningEffort::Medium),
                (ThinkingKind::Adaptive, _) => Reasoning::Effort(ReasoningEffort::High),
            };
        }
        if let Some(r) = &self.reasoning {
            if r.enabled == Some(false) {
                return Reasoning::Off;
            }
            if let Some(b) = r.max_tokens {
                return Reasoning::Budget(b);
            }
            if let Some(e) = r.effort.or(self.reasoning_effort) {
                return effort(e);
            }
            if r.enabled == Some(true) {
                return Reasoning::Effort(ReasoningEffort::Medium);
            }
        }
        match self.reasoning_effort {
            Some(e) => effort(e),
            None => Reasoning::Default,
        }
    }

    /// The first top-level field the gateway does not know, ignoring explicit nulls and values
    /// that only restate OpenAI's default (nothing to honour: `store: false`,
    /// `service_tier: "auto"`, `modalities: ["text"]`).
    pub fn first_unknown_field(&self) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, v)| !v.is_null() && !restates_default(k, v))
            .map(|(k, _)| k.as_str())
    }
}

/// Whether a field the translators do not take holds only OpenAI's own default for it.
fn restates_default(field: &str, value: &Value) -> bool {
    match field {
        "store" => value == &Value::Bool(false),
        "service_tier" => value.as_str() == Some("auto"),
        "modalities" => value
            .as_array()
            .is_some_and(|m| m.len() == 1 && m[0] == "text"),
        _ => false,
    }
}

fn effort(e: ReasoningEffort) -> Reasoning {
    if e == ReasoningEffort::None {
        Reasoning::Off
    } else {
        Reasoning::Effort(e)
    }
}

/// A provider's JSON value (tool-call arguments) as compact text, keys in the order the provider
/// sent them. `raw` must be valid JSON (a `RawValue`'s text): only the whitespace between tokens is
/// dropped, strings are copied byte for byte. (Going through `serde_json::Value` would sort the
/// keys, so a client would not see the arguments as the model wrote them.)
pub fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Splits a `data:<mime>;base64,<data>` URL into its media type and base64 payload.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let cut = meta.len().checked_sub(";base64".len())?;
    let mime = meta
        .get(cut..)
        .filter(|tail| tail.eq_ignore_ascii_case(";base64"))
        .and(meta.get(..cut))?;
    Some((if mime.is_empty() { "text/plain" } else { mime }, data))
}

/// Why the model stopped, in OpenAI's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    /// Maps an Anthropic `stop_reason`.
    pub fn from_anthropic(stop_reason: &str) -> Self {
        match stop_reason {
            "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            // end_turn, stop_sequence, pause_turn
            _ => FinishReason::Stop,
        }
    }

    /// Maps a Gemini `finishReason`; `STOP` after function calls is `tool_calls`.
    pub fn from_gemini(reason: &str, saw_tool_calls: bool) -> Self {
        match reason {
            "MAX_TOKENS" => FinishReason::Length,
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "LANGUAGE"
            | "MODEL_ARMOR" => FinishReason::ContentFilter,
            _ if saw_tool_calls => FinishReason::ToolCalls,
            _ => FinishReason::Stop,
        }
    }
}

/// Token usage in OpenAI's terms: cached tokens are counted inside `prompt_tokens`, reasoning
/// tokens inside `completion_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens read from a cache.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to a cache (Anthropic).
    pub cache_write_tokens: Option<u64>,
    /// Completion tokens spent thinking.
    pub reasoning_tokens: Option<u64>,
}

/// One piece of a translated stream, in the order the client should see it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPart {
    /// The provider's message id and model.
    Start {
        id: String,
        model: String,
    },
    TextDelta(String),
    ReasoningDelta(String),
    /// Reasoning text that is also part of the `index`-th [`ReasoningDetail`] of the response
    /// (a Claude thinking block, whose signature follows as a `ReasoningDetail` of the same
    /// index): clients that keep `reasoning_details` put the pieces of one index together.
    SignedReasoningDelta {
        index: u32,
        text: String,
    },
    /// A piece of reasoning the client must send back to continue from it (see
    /// [`ReasoningDetail`]), the `index`-th of the response; streamed, a thinking block's comes
    /// with an empty text once its [`StreamPart::SignedReasoningDelta`]s have carried it.
    ReasoningDetail {
        index: u32,
        detail: ReasoningDetail,
    },
    /// A tool call begins; `index` is its position among the response's tool calls.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallArgs {
        index: u32,
        delta: String,
    },
    Finish(FinishReason),
    /// The usage so far; a later one replaces an earlier one.
    Usage(Usage),
    /// The stream failed; nothing after it counts.
    Error(GatewayError),
}

/// A non-streaming response.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    /// The provider's model until the caller sets the gateway model id.
    pub model: String,
    /// Unix seconds; translators leave 0 for the caller to set.
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

/// One choice of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: Option<FinishReason>,
}

/// The assistant's message in a response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssistantMessage {
    pub content: Option<String>,
    /// Thinking text, if the provider returned any.
    pub reasoning: Option<String>,
    /// The reasoning to send back to continue from it (`reasoning_details`), in order.
    pub reasoning_details: Vec<ReasoningDetail>,
    pub tool_calls: Vec<ResponseToolCall>,
}

/// A tool call in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseToolCall {
    pub id: String,
    pub name: String,
    /// JSON arguments as a string.
    pub arguments: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ChatRequest, GatewayError> {
        ChatRequest::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn parses_every_message_shape() {
        let req = parse(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,QUJD", "filename": "a.pdf"}},
                    {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ]
        }))
        .unwrap();
        assert_eq!(req.messages.len(), 5);
        match &req.messages[2] {
            Message::User {
                content: Content::Parts(p),
            } => {
                let kinds: Vec<_> = p.iter().map(|p| p.kind()).collect();
                assert_eq!(kinds, ["text", "image_url", "file", "input_audio"]);
            }
            other => panic!("{other:?}"),
        }
        match &req.messages[3] {
            Message::Assistant {
                content: None,
                tool_calls: Some(tc),
                ..
            } => {
                assert_eq!(tc[0].function.arguments, "{\"a\":1}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tool_choice_stop_and_unknown_fields() {
        let req = parse(json!({
            "model": "m", "messages": [],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "stop": "END", "frobnicate": 1, "store": null
        }))
        .unwrap();
        assert_eq!(req.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(req.stop.as_ref().unwrap().to_vec(), vec!["END".to_string()]);
        assert_eq!(req.first_unknown_field(), Some("frobnicate"));
        let req = parse(
            json!({"model": "m", "messages": [], "tool_choice": "required", "stop": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(req.tool_choice, Some(ToolChoice::Required));
        assert_eq!(req.stop.unwrap().to_vec().len(), 2);
        assert!(parse(json!({"model": "m", "messages": [], "tool_choice": "sometimes"})).is_err());
    }

    #[test]
    fn claudes_thinking_given_back_is_put_together_as_streamed_or_whole() {
        let items = |v: Value| -> Vec<InboundReasoningDetail> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| serde_json::from_value(i.clone()).unwrap())
                .collect()
        };
        let text = |t: &str, s: &str| ReasoningDetail::Text {
            text: t.into(),
            signature: s.into(),
        };
        // As streamed: pieces, then the signature, under one index; then a redacted block.
        let streamed = items(json!([
            {"type": "reasoning.text", "text": "Let me ", "format": "anthropic-claude-v1", "index": 0},
            {"type": "reasoning.text", "text": "think.", "format": "anthropic-claude-v1", "index": 0},
            {"type": "reasoning.text", "text": "", "signature": "s0", "format": "anthropic-claude-v1", "index": 0},
            {"type": "reasoning.encrypted", "data": "r1", "format": "anthropic-claude-v1", "index": 1},
            {"type": "reasoning.text", "text": "More.", "index": 2},
            {"type": "reasoning.text", "signature": "s2", "index": 2},
            // A client that kept no index: its pieces still make one block.
            {"type": "reasoning.text", "text": "No "},
            {"type": "reasoning.text", "text": "index.", "signature": "s3"}
        ]));
        assert_eq!(
            anthropic_thinking(&streamed),
            vec![
                text("Let me think.", "s0"),
                ReasoningDetail::Encrypted { data: "r1".into() },
                text("More.", "s2"),
                text("No index.", "s3")
            ]
        );
        // Whole (as a non-streamed answer gives them), unsigned or foreign items left out.
        let whole = items(json!([
            {"type": "reasoning.text", "text": "A", "signature": "sa", "format": "anthropic-claude-v1", "index": 0},
            {"type": "reasoning.text", "text": "B", "signature": "sb", "format": "anthropic-claude-v1", "index": 1},
            {"type": "reasoning.text", "text": "unsigned", "index": 2},
            {"type": "reasoning.encrypted", "data": "g", "id": "call_1", "format": "google-gemini-v1"},
            {"type": "reasoning.encrypted", "data": "o", "format": "openai-responses-v1"},
            {"type": "reasoning.summary", "summary": "s"}
        ]));
        assert_eq!(
            anthropic_thinking(&whole),
            vec![text("A", "sa"), text("B", "sb")]
        );
        // As the OpenAI Python SDK's stream helper merges the pieces of one index: every string
        // joined, `format` too (three pieces: three times).
        let merged = items(json!([
            {"type": "reasoning.text", "text": "Let me think.", "signature": "s0",
             "format": "anthropic-claude-v1anthropic-claude-v1anthropic-claude-v1", "index": 0},
            {"type": "reasoning.text", "text": "x", "signature": "bad",
             "format": "anthropic-claude-v1anthropic", "index": 1},
            {"type": "reasoning.encrypted", "data": "g", "id": "call_1",
             "format": "google-gemini-v1google-gemini-v1"}
        ]));
        assert_eq!(
            anthropic_thinking(&merged),
            vec![text("Let me think.", "s0")]
        );
        assert_eq!(merged[2].gemini_signature_for("call_1"), Some("g"));
        assert_eq!(merged[1].gemini_signature_for("call_1"), None);
    }

    #[test]
    fn reasoning_options_fold_with_budget_first() {
        let r = |v: Value| parse(v).unwrap().reasoning();
        assert_eq!(r(json!({"model": "m", "messages": []})), Reasoning::Default);
        assert_eq!(
            r(json!({"model": "m", "messages": [], "reasoning_effort": "high"})),
            Reasoning::Effort(ReasoningEffort::High)
        );
        assert_eq!(
            r(json!({"model": "m", "messages": [], "reasoning_effort": "xhigh"})),
            Reasoning::Effort(ReasoningEffort::XHigh)
        );
        assert_eq!(
            r(json!({"model": "m", "messages": [], "thinking": {"type": "adaptive"}})),
            Reasoning::Effort(ReasoningEffort::High)
        );
        assert_eq!(
            r(
                json!({"model": "m", "messages": [], "thinking": {"type": "adaptive", "display": "summarized"}})
            ),
            Reasoning::Effort(ReasoningEffort::High)
        );
        assert!(parse(
            json!({"model": "m", "messages": [], "thinking": {"type": "adaptive", "display": "loud"}})
        )
        .is_err());
        assert_eq!(
            r(json!({"model": "m", "messages": [], "reasoning_effort": "none"})),
            Reasoning::Off
        );
        assert_eq!(
            r(
                json!({"model": "m", "messages": [], "reasoning_effort": "low", "reasoning": {"max_tokens": 3000}})
            ),
            Reasoning::Budget(3000)
        );
        assert_eq!(
            r(
                json!({"model": "m", "messages": [], "thinking": {"type": "enabled", "budget_tokens": 2000}})
            ),
            Reasoning::Budget(2000)
        );
        assert_eq!(
            r(json!({"model": "m", "messages": [], "thinking": {"type": "disabled"}})),
            Reasoning::Off
        );
        assert!(
            parse(json!({"model": "m", "messages": [], "reasoning": {"exclude": true}})).is_err()
        );
    }

    #[test]
    fn compact_json_keeps_key_order_and_strings() {
        let raw = "{\n  \"unit\": \"celsius\",\n  \"city\" : \"New York \\\" \\\\ \\n x\",\n  \"tags\": [ 1, 2.5e3, true, null, {} ]\n}";
        let compact = compact_json(raw);
        assert_eq!(
            compact,
            r#"{"unit":"celsius","city":"New York \" \\ \n x","tags":[1,2.5e3,true,null,{}]}"#
        );
        // The same value as the provider sent, in the provider's key order.
        assert_eq!(
            serde_json::from_str::<Value>(&compact).unwrap(),
            serde_json::from_str::<Value>(raw).unwrap()
        );
        assert_eq!(compact_json("{}"), "{}");
        assert_eq!(compact_json(r#"{"a":"é 🚀\t"}"#), r#"{"a":"é 🚀\t"}"#);
    }

    #[test]
    fn data_urls_split_into_mime_and_payload() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBO"),
            Some(("image/png", "iVBO"))
        );
        assert_eq!(
            parse_data_url("data:;base64,QQ=="),
            Some(("text/plain", "QQ=="))
        );
        assert_eq!(parse_data_url("data:image/png,raw"), None);
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }

    #[test]
    fn finish_reasons_map_from_both_providers() {
        assert_eq!(FinishReason::from_anthropic("end_turn"), FinishReason::Stop);
        assert_eq!(
            FinishReason::from_anthropic("stop_sequence"),
            FinishReason::Stop
        );
        assert_eq!(
            FinishReason::from_anthropic("max_tokens"),
            FinishReason::Length
        );
        assert_eq!(
            FinishReason::from_anthropic("tool_use"),
            FinishReason::ToolCalls
        );
        assert_eq!(
            FinishReason::from_anthropic("refusal"),
            FinishReason::ContentFilter
        );
        assert_eq!(FinishReason::from_gemini("STOP", false), FinishReason::Stop);
        assert_eq!(
            FinishReason::from_gemini("STOP", true),
            FinishReason::ToolCalls
        );
        assert_eq!(
            FinishReason::from_gemini("MAX_TOKENS", true),
            FinishReason::Length
        );
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(
                FinishReason::from_gemini(r, false),
                FinishReason::ContentFilter
            );
        }
        assert_eq!(FinishReason::ToolCalls.as_str(), "tool_calls");
    }
}

//! Google Gemini `generateContent` (also the body Vertex AI takes for Gemini models): request
//! builder, response and error translation, stream translator.
//!
//! Mapping decisions (each refusal is a 400 naming the field):
//! * `system`/`developer` messages become `systemInstruction`; assistant turns are `model`
//!   contents, tool results are `functionResponse` parts in `user` contents, named by looking up
//!   the earlier assistant tool call with the same id. Consecutive contents of one role merge.
//! * Function declarations and `json_schema` use Gemini's JSON Schema fields
//!   (`parametersJsonSchema`, `responseJsonSchema`), which take OpenAI's schemas as they are
//!   (the OpenAPI-subset `parameters`/`responseSchema` reject e.g. `additionalProperties`).
//! * A replayed assistant function call has no thought signature (OpenAI clients never see
//!   one); the first call of each turn carries Google's documented placeholder
//!   [`SKIP_THOUGHT_SIGNATURE`] so Gemini 3 models accept the history.
//! * `n` becomes `candidateCount` (refused with `stream`: stream parts carry no choice index).
//! * Reasoning: a budget becomes `thinkingBudget`; an effort level becomes `thinkingLevel` on
//!   Gemini 3 models (the level if the model takes it, else the next one up: Gemini 3 Pro takes
//!   only low and high) and the level's budget elsewhere; `none` is `thinkingBudget: 0`, or the
//!   least thinking where it cannot be switched off (Gemini 3: its lowest level; 2.5 Pro: 128).
//!   Thoughts are requested (`includeThoughts`) whenever reasoning is asked for.
//! * Refused: `logprobs`/`top_logprobs` (not translated by the gateway), `logit_bias`,
//!   `parallel_tool_calls: false` (Gemini has no switch for it), `file_id` that is not a URI,
//!   unknown top-level fields, media URIs whose type their extension does not tell, non-zero
//!   penalties except on `gemini-2.0-flash` (`takes_penalties`; zero is not sent). Tool
//!   `strict` is accepted but Gemini has no strict mode; `user`, `safety_identifier`,
//!   `metadata`, a message's `name`, an image's `detail` and a file's `filename` have no Gemini
//!   field and do not change what is asked, so they are not forwarded.

use super::turns::Turns;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::canonical::{
    compact_json, parse_data_url, AssistantMessage, ChatRequest, ChatResponse, Choice, Content,
    ContentPart, FinishReason, Message, Reasoning, ReasoningDetail, ResponseFormat,
    ResponseToolCall, StreamPart, ToolChoice, Usage,
};
use crate::error::GatewayError;
use crate::sse::SseEvent;

/// Google's documented placeholder for a function call replayed without its thought signature.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";
const PROVIDER: &str = "Gemini";

/// `POST {base}/v1beta/models/{model}:generateContent`, or `:streamGenerateContent?alt=sse`.
pub fn endpoint(base_url: &str, native_model: &str, stream: bool) -> String {
    format!(
        "{}/v1beta/models/{native_model}:{}",
        base_url.trim_end_matches('/'),
        method(stream)
    )
}

/// The method part of a Gemini URL (shared with Vertex).
pub(crate) fn method(stream: bool) -> &'static str {
    if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    }
}

/// The headers every Gemini API request carries.
pub fn auth_headers(api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-goog-api-key", api_key.to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
}

/// The native request body for `req`, or a 400 for what Gemini cannot honour.
pub fn build_request(req: &ChatRequest, native_model: &str) -> Result<Vec<u8>, GatewayError> {
    let body = build_body(req, native_model, PROVIDER)?;
    Ok(serde_json::to_vec(&Value::Object(body)).expect("body serializes"))
}

/// The body as a JSON object; `provider` names the service in refusals.
pub(crate) fn build_body(
    req: &ChatRequest,
    native_model: &str,
    provider: &str,
) -> Result<Map<String, Value>, GatewayError> {
    check_supported(req, provider)?;
    let mut body = Map::new();
    let (system, contents) = convert_messages(&req.messages, provider)?;
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if let Some(tools) = tools(req, provider)? {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(req) {
        body.insert("toolConfig".into(), config);
    }
    let generation = generation_config(req, native_model)?;
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    Ok(body)
}

fn unsupported(field: &str, provider: &str) -> GatewayError {
    GatewayError::invalid_param(field, format!("`{field}` is not supported by {provider}."))
}

fn check_supported(req: &ChatRequest, provider: &str) -> Result<(), GatewayError> {
    if let Some(field) = req.first_unknown_field() {
        return Err(unsupported(field, provider));
    }
    if req.logprobs == Some(true) || req.top_logprobs.is_some_and(|n| n > 0) {
        let field = if req.logprobs == Some(true) {
            "logprobs"
        } else {
            "top_logprobs"
        };
        return Err(GatewayError::invalid_param(
            field,
            format!("`{field}` is not supported for {provider} models by this gateway."),
        ));
    }
    if req.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(unsupported("logit_bias", provider));
    }
    if req.parallel_tool_calls == Some(false) && req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(GatewayError::invalid_param(
            "parallel_tool_calls",
            format!("{provider} cannot be told to avoid parallel tool calls."),
        ));
    }
    if req.n.is_some_and(|n| n > 1) && req.is_stream() {
        return Err(GatewayError::invalid_param(
            "n",
            "`n` greater than 1 is only supported without `stream` by this gateway.",
        ));
    }
    Ok(())
}

fn convert_messages(
    messages: &[Message],
    provider: &str,
) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    let mut system = Vec::new();
    let mut contents = Turns::new("parts");
    // tool call id -> function name, from the assistant turns seen so far
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content } | Message::Developer { content } => {
                let text = content.text_only(&param)?;
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
            }
            Message::User { content } => {
                contents.push("user", user_parts(content, &param, provider)?)
            }
            Message::Assistant {
                content,
                tool_calls,
                refusal,
                audio,
                reasoning_details,
            } => {
                if audio.as_ref().is_some_and(|a| !a.is_null()) {
                    return Err(super::native::audio_reference_refused(i, provider));
                }
                let mut parts = Vec::new();
                if let Some(c) = content {
                    push_text(&mut parts, c.text_only(&param)?);
                }
                push_text(&mut parts, refusal.clone().unwrap_or_default());
                for (j, tc) in tool_calls.iter().flatten().enumerate() {
                    call_names.insert(&tc.id, &tc.function.name);
                    let args = super::anthropic::parse_arguments(&tc.function.arguments, i, j)?;
                    let mut part =
                        json!({"functionCall": {"name": tc.function.name, "args": args}});
                    // The call's own signature when the client gave it back
                    // (`reasoning_details`); else Google's placeholder on the first call,
                    // which Gemini 3 requires one on.
                    let given = reasoning_details
                        .iter()
                        .find_map(|d| d.gemini_signature_for(&tc.id));
                    match given {
                        Some(signature) => part["thoughtSignature"] = json!(signature),
                        None if j == 0 => part["thoughtSignature"] = json!(SKIP_THOUGHT_SIGNATURE),
                        None => {}
                    }
                    parts.push(part);
                }
                contents.push("model", parts);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = call_names.get(tool_call_id.as_str()).ok_or_else(|| {
                    GatewayError::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        format!("`{tool_call_id}` does not match any earlier assistant tool call."),
                    )
                })?;
                let text = content.text_only(&param)?;
                let response = function_response(&text);
                contents.push(
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                );
            }
        }
    }
    let mut contents = contents.finish();
    if contents.is_empty() && !system.is_empty() {
        // Only instructions (OpenAI answers those; Gemini needs a turn): they are the turn.
        contents.push(json!({"role": "user", "parts": std::mem::take(&mut system)}));
    }
    Ok((system, contents))
}

/// A tool result as Gemini's `response` object: a JSON object as it is, anything else under
/// `output` (the key Google's docs name for function output).
fn function_response(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(other) => json!({"output": other}),
        Err(_) => json!({"output": text}),
    }
}

fn push_text(parts: &mut Vec<Value>, text: String) {
    if !text.is_empty() {
        parts.push(json!({"text": text}));
    }
}

fn user_parts(content: &Content, param: &str, provider: &str) -> Result<Vec<Value>, GatewayError> {
    let items = match content {
        Content::Text(t) => {
            let mut parts = Vec::new();
            push_text(&mut parts, t.clone());
            return Ok(parts);
        }
        Content::Parts(p) => p,
    };
    let mut parts = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let param = format!("{param}[{k}]");
        match item {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                push_text(&mut parts, text.clone())
            }
            ContentPart::ImageUrl { image_url } => {
                parts.push(media_part(&image_url.url, None, &param, provider)?)
            }
            ContentPart::File { file } => match (&file.file_data, &file.file_id) {
                (Some(data), _) => parts.push(media_part(data, None, &param, provider)?),
                (None, Some(id)) if is_uri(id) => {
                    parts.push(media_part(id, file.filename.as_deref(), &param, provider)?)
                }
                _ => {
                    return Err(GatewayError::invalid_param(
                        &param,
                        format!(
                        "{provider} needs files inline as `file_data` or as a URI in `file_id`."
                    ),
                    ))
                }
            },
            ContentPart::InputAudio { input_audio } => {
                let mime = match input_audio.format.as_str() {
                    "mp3" => "audio/mp3".to_owned(),
                    other => format!("audio/{other}"),
                };
                parts.push(json!({"inlineData": {"mimeType": mime, "data": input_audio.data}}));
            }
        }
    }
    Ok(parts)
}

fn is_uri(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://") || s.starts_with("gs://")
}

/// A data URL as `inlineData`, a URI as `fileData` with the media type its extension (or the
/// file's `filename`) tells. A URI whose type cannot be told goes without one to the Gemini API,
/// which finds it itself (Files API URIs, YouTube links); Vertex AI needs it, so there it is
/// refused rather than sent under a guessed type.
fn media_part(
    url: &str,
    filename: Option<&str>,
    param: &str,
    provider: &str,
) -> Result<Value, GatewayError> {
    if let Some((mime, data)) = parse_data_url(url) {
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if is_uri(url) {
        let mime = mime_of(url)
            .or_else(|| filename.and_then(mime_of_name))
            // A YouTube link is a video; Vertex AI wants that said, the Gemini API does not.
            .or_else(|| (is_youtube(url) && provider != PROVIDER).then_some("video/mp4"));
        return match mime {
            Some(mime) => Ok(json!({"fileData": {"mimeType": mime, "fileUri": url}})),
            None if provider == PROVIDER => Ok(json!({"fileData": {"fileUri": url}})),
            None => Err(GatewayError::invalid_param(
                param,
                format!(
                    "{provider} needs the media type of a file given by URL, and neither the URL \
                     nor a `filename` tells it: send the file as a base64 data URL \
                     (`data:<type>;base64,…`), or give a URL or `filename` ending in a known \
                     extension (.png, .jpg, .pdf, .mp3, .mp4, …)."
                ),
            )),
        };
    }
    Err(GatewayError::invalid_param(
        param,
        "Media must be an http(s)/gs URI or a base64 data URL.",
    ))
}

fn is_youtube(url: &str) -> bool {
    let host = url.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    matches!(
        host.to_ascii_lowercase().as_str(),
        "youtube.com" | "www.youtube.com" | "m.youtube.com" | "youtu.be"
    )
}

/// The media type a URL's extension tells, among those Gemini reads.
fn mime_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    mime_of_name(path.rsplit('/').next().unwrap_or(""))
}

/// The media type a file name's extension tells, among those Gemini reads.
fn mime_of_name(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "mpeg" | "mpg" => "video/mpeg",
        "webm" => "video/webm",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "md" => "text/md",
        _ => return None,
    })
}

fn tools(req: &ChatRequest, provider: &str) -> Result<Option<Value>, GatewayError> {
    let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let mut decls = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(GatewayError::invalid_param(
                &format!("tools[{i}].type"),
                format!("Tool type `{}` is not supported by {provider}.", t.kind),
            ));
        }
        let mut d = Map::new();
        d.insert("name".into(), json!(t.function.name));
        if let Some(desc) = &t.function.description {
            d.insert("description".into(), json!(desc));
        }
        if let Some(params) = &t.function.parameters {
            d.insert("parametersJsonSchema".into(), params.clone());
        }
        decls.push(Value::Object(d));
    }
    Ok(Some(json!([{"functionDeclarations": decls}])))
}

fn tool_config(req: &ChatRequest) -> Option<Value> {
    let config = match req.tool_choice.as_ref()? {
        ToolChoice::None => json!({"mode": "NONE"}),
        ToolChoice::Auto => json!({"mode": "AUTO"}),
        ToolChoice::Required => json!({"mode": "ANY"}),
        ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
    };
    Some(json!({"functionCallingConfig": config}))
}

/// Whether a Gemini model takes `presencePenalty` / `frequencyPenalty`: only `gemini-2.0-flash`
/// (not its thinking variant) of the models served since 2025; the 2.5 and later models answer
/// 400 "Penalty is not enabled for models/…" to any value but zero.
fn takes_penalties(native_model: &str) -> bool {
    native_model.starts_with("gemini-2.0-flash") && !native_model.contains("thinking")
}

fn generation_config(
    req: &ChatRequest,
    native_model: &str,
) -> Result<Map<String, Value>, GatewayError> {
    let mut g = Map::new();
    let mut put = |k: &str, v: Value| {
        g.insert(k.to_owned(), v);
    };
    if let Some(t) = req.temperature {
        put("temperature", json!(t));
    }
    if let Some(p) = req.top_p {
        put("topP", json!(p));
    }
    if let Some(m) = req.max_output_tokens() {
        put("maxOutputTokens", json!(m));
    }
    if let Some(stop) = &req.stop {
        put("stopSequences", json!(stop.to_vec()));
    }
    if let Some(n) = req.n.filter(|&n| n > 1) {
        put("candidateCount", json!(n));
    }
    if let Some(seed) = req.seed {
        put("seed", json!(seed));
    }
    for (param, field, value) in [
        ("presence_penalty", "presencePenalty", req.presence_penalty),
        (
            "frequency_penalty",
            "frequencyPenalty",
            req.frequency_penalty,
        ),
    ] {
        match value {
            // Zero asks for nothing (and every model takes it).
            None | Some(0.0) => {}
            Some(p) if takes_penalties(native_model) => put(field, json!(p)),
            Some(_) => {
                return Err(GatewayError::invalid_param(
                    param,
                    format!("`{native_model}` takes no `{param}`: Google allows penalties only on `gemini-2.0-flash`."),
                ))
            }
        }
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => put("responseMimeType", json!("application/json")),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.schema_for_provider()?;
            put("responseMimeType", json!("application/json"));
            put("responseJsonSchema", schema);
        }
        Some(ResponseFormat::Text) | None => {}
    }
    if let Some(thinking) = thinking_config(req.reasoning(), native_model) {
        put("thinkingConfig", thinking);
    }
    Ok(g)
}

/// Whether a Gemini model is set by thinking levels (Gemini 3 and later, and the `-latest`
/// aliases, which name current models) rather than token budgets (2.5 and earlier).
fn takes_thinking_levels(native_model: &str) -> bool {
    native_model.strip_prefix("gemini-").is_some_and(|rest| {
        // `gemini-pro-latest`, not `gemini-1.5-pro-latest`
        (rest.ends_with("-latest") && !rest.starts_with(|c: char| c.is_ascii_digit()))
            || rest
                .split(['-', '.'])
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 3)
    })
}

fn thinking_config(reasoning: Reasoning, native_model: &str) -> Option<Value> {
    let gemini_3 = takes_thinking_levels(native_model);
    match reasoning {
        Reasoning::Default => None,
        // Gemini 3 and 2.5 Pro cannot stop thinking: the least they take.
        Reasoning::Off if gemini_3 => {
            Some(json!({"thinkingLevel": thinking_levels(native_model)[0]}))
        }
        Reasoning::Off if native_model.starts_with("gemini-2.5-pro") => {
            Some(json!({"thinkingBudget": 128}))
        }
        Reasoning::Off => Some(json!({"thinkingBudget": 0})),
        Reasoning::Budget(b) => Some(json!({"thinkingBudget": b, "includeThoughts": true})),
        Reasoning::Effort(e) if gemini_3 => Some(json!({
            "thinkingLevel": thinking_level(native_model, e.as_str()),
            "includeThoughts": true
        })),
        Reasoning::Effort(e) => {
            Some(json!({"thinkingBudget": e.budget_tokens(), "includeThoughts": true}))
        }
    }
}

const LEVELS: [&str; 4] = ["minimal", "low", "medium", "high"];

/// The thinking levels a Gemini 3 model takes, lowest first (Google's thinking guide: Gemini 3
/// Pro takes low and high, later Pro models low to high, Flash models all four).
fn thinking_levels(native_model: &str) -> &'static [&'static str] {
    if native_model.starts_with("gemini-3-pro") {
        &["low", "high"]
    } else if native_model.contains("-pro") {
        &LEVELS[1..]
    } else {
        &LEVELS
    }
}

/// The level asked for if the model takes it, else the next one up it takes (else its highest).
fn thinking_level(native_model: &str, wanted: &str) -> &'static str {
    let levels = thinking_levels(native_model);
    let from = LEVELS
        .iter()
        .position(|l| *l == wanted)
        .unwrap_or(LEVELS.len() - 1);
    LEVELS[from..]
        .iter()
        .find(|l| levels.contains(l))
        .copied()
        .unwrap_or(levels[levels.len() - 1])
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    response_id: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    /// Why, in words, for some finish reasons (`MALFORMED_FUNCTION_CALL`).
    #[serde(default)]
    finish_message: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default)]
    function_call: Option<FunctionCallPart>,
    /// Gemini 3's signature of the thinking behind this part; the one on a function call must
    /// come back with it.
    #[serde(default)]
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallPart {
    #[serde(default)]
    name: Option<String>,
    /// Kept as sent, so the arguments reach the client in the model's key order.
    #[serde(default)]
    args: Option<Box<RawValue>>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    will_continue: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

/// Gemini usage; the fields are totals so far.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: Option<u64>,
    #[serde(default)]
    candidates_token_count: Option<u64>,
    #[serde(default)]
    thoughts_token_count: Option<u64>,
    #[serde(default)]
    cached_content_token_count: Option<u64>,
}

impl UsageMetadata {
    /// OpenAI usage: thoughts count as completion tokens; cached tokens are part of the prompt.
    fn to_usage(self) -> Usage {
        let prompt = self.prompt_token_count.unwrap_or(0);
        let completion = self
            .candidates_token_count
            .unwrap_or(0)
            .saturating_add(self.thoughts_token_count.unwrap_or(0));
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cached_tokens: self.cached_content_token_count,
            cache_write_tokens: None,
            reasoning_tokens: self.thoughts_token_count,
        }
    }

    fn has_counts(&self) -> bool {
        self.prompt_token_count.is_some() || self.candidates_token_count.is_some()
    }
}

/// A function call's `args` as the OpenAI `arguments` string: compact, in Gemini's key order;
/// `{}` when Gemini sent none.
fn arguments_text(args: Option<&RawValue>) -> String {
    args.map_or_else(|| "{}".to_owned(), |a| compact_json(a.get()))
}

/// The id of a function call: Gemini's own when it sent one, else `call_<responseId>_<n>`.
///
/// A bare `call_<n>` would repeat in every turn of a conversation, and a history with repeated
/// ids is refused by providers that require unique tool-call ids (Anthropic: "`tool_use` ids must
/// be unique"), e.g. when a later turn goes to Claude. The response id makes the generated ids
/// unique per response; only its `[A-Za-z0-9_-]` characters are kept, which every provider
/// accepts in an id. Without a response id, `call_<n>`.
fn call_id(given: Option<String>, index: u32, response_id: Option<&str>) -> String {
    if let Some(id) = given.filter(|s| !s.is_empty()) {
        return id;
    }
    let unique: String = response_id
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if unique.is_empty() {
        format!("call_{index}")
    } else {
        format!("call_{unique}_{index}")
    }
}

/// Translates a non-streaming `generateContent` response.
pub fn translate_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    translate_response_for(body, PROVIDER)
}

pub(crate) fn translate_response_for(
    body: &[u8],
    provider: &str,
) -> Result<ChatResponse, GatewayError> {
    let resp: GenerateResponse = serde_json::from_slice(body).map_err(|_| unreadable(provider))?;
    if resp.error.is_some() {
        return Err(translate_google_error(provider, 0, None, body));
    }
    let response_id = resp.response_id.as_deref();
    let mut choices: Vec<Choice> = resp
        .candidates
        .into_iter()
        .map(|c| candidate_choice(c, response_id, provider))
        .collect::<Result<_, _>>()?;
    // (With `n` > 1, one empty candidate among answers is left as it is.)
    if !choices.is_empty() && choices.iter().all(is_empty_answer) {
        return Err(empty_answer(provider));
    }
    if choices.is_empty() {
        // The prompt itself was blocked: no candidate, only promptFeedback. No candidate and
        // no reason is no answer (as when a stream ends so): the attempt fails, not an empty
        // success.
        if resp.prompt_feedback.and_then(|f| f.block_reason).is_none() {
            return Err(GatewayError::bad_gateway(format!(
                "{provider} returned no answer (no candidates) and no reason."
            )));
        }
        choices.push(Choice {
            index: 0,
            message: AssistantMessage::default(),
            finish_reason: Some(FinishReason::ContentFilter),
        });
    }
    Ok(ChatResponse {
        id: resp.response_id.unwrap_or_default(),
        model: resp.model_version.unwrap_or_default(),
        created: 0,
        choices,
        usage: resp.usage_metadata.map(UsageMetadata::to_usage),
    })
}

/// A finish reason that says the answer failed rather than ended: the model produced a tool
/// call that is invalid or was not asked for. OpenAI has no such finish reason, and reporting
/// `stop` would pass an empty or truncated answer as a success; the attempt fails instead (a
/// retry may well succeed), with Google's `finishMessage`.
fn failed_finish(c: &Candidate, provider: &str) -> Option<GatewayError> {
    let reason = c.finish_reason.as_deref()?;
    if !matches!(
        reason,
        "MALFORMED_FUNCTION_CALL"
            | "UNEXPECTED_TOOL_CALL"
            | "TOO_MANY_TOOL_CALLS"
            | "MISSING_THOUGHT_SIGNATURE"
    ) {
        return None;
    }
    let detail = c
        .finish_message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    Some(
        GatewayError::bad_gateway(format!("{provider} ended the answer with {reason}{detail}"))
            .with_code("upstream_invalid_tool_call"),
    )
}

/// An answer that ended as finished (`STOP`, `OTHER`, or no reason) with no text and no tool
/// call: a known Gemini failure (mostly in tool loops), not an answer. Reporting `stop` would
/// end the client's loop with nothing; the attempt fails instead (a retry usually answers).
fn empty_answer(provider: &str) -> GatewayError {
    GatewayError::bad_gateway(format!(
        "{provider} ended the answer without any text or tool call."
    ))
    .with_code("upstream_empty_answer")
}

fn is_empty_answer(c: &Choice) -> bool {
    matches!(c.finish_reason, None | Some(FinishReason::Stop))
        && c.message.content.as_deref().unwrap_or_default().is_empty()
        && c.message.tool_calls.is_empty()
}

fn candidate_choice(
    c: Candidate,
    response_id: Option<&str>,
    provider: &str,
) -> Result<Choice, GatewayError> {
    if let Some(e) = failed_finish(&c, provider) {
        return Err(e);
    }
    let mut message = AssistantMessage::default();
    // Choices after the first (`n` > 1) number their calls apart, so that no two tool calls
    // of one response share an id.
    let scope = match c.index {
        Some(n) if n > 0 => format!("{}_{n}", response_id.unwrap_or("choice")),
        _ => response_id.unwrap_or_default().to_owned(),
    };
    let scope = Some(scope.as_str()).filter(|s| !s.is_empty());
    for part in c.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(fc) = part.function_call {
            let Some(name) = fc.name else { continue };
            let index = message.tool_calls.len() as u32;
            let id = call_id(fc.id, index, scope);
            if let Some(data) = part.thought_signature.filter(|s| !s.is_empty()) {
                message
                    .reasoning_details
                    .push(ReasoningDetail::ToolCallSignature {
                        id: id.clone(),
                        data,
                    });
            }
            message.tool_calls.push(ResponseToolCall {
                id,
                name,
                arguments: arguments_text(fc.args.as_deref()),
            });
        } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
            let slot = if part.thought == Some(true) {
                &mut message.reasoning
            } else {
                &mut message.content
            };
            slot.get_or_insert_with(String::new).push_str(&text);
        }
    }
    let saw_tools = !message.tool_calls.is_empty();
    Ok(Choice {
        index: c.index.unwrap_or(0),
        finish_reason: c
            .finish_reason
            .as_deref()
            .map(|r| FinishReason::from_gemini(r, saw_tools)),
        message,
    })
}

fn unreadable(provider: &str) -> GatewayError {
    GatewayError::bad_gateway(format!(
        "{provider} returned a response the gateway could not read."
    ))
}

/// Maps a Gemini API error response to the gateway error the client sees.
pub fn translate_error(status: u16, retry_after: Option<String>, body: &[u8]) -> GatewayError {
    translate_google_error(PROVIDER, status, retry_after, body)
}

#[derive(Deserialize)]
struct GoogleErrorEnvelope {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

fn parse_google_error(body: &[u8]) -> Option<GoogleError> {
    // Vertex sometimes wraps the error in an array. (Try it first: serde would also read an
    // array into the one-field envelope, positionally.)
    if let Ok(list) = serde_json::from_slice::<Vec<GoogleErrorEnvelope>>(body) {
        return list.into_iter().next().map(|e| e.error);
    }
    serde_json::from_slice::<GoogleErrorEnvelope>(body)
        .ok()
        .map(|e| e.error)
}

/// Maps a Google (Gemini API or Vertex AI) error body; `provider` names the service.
pub(crate) fn translate_google_error(
    provider: &str,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
) -> GatewayError {
    let parsed = parse_google_error(body);
    let (code, message, grpc, retry_delay) = match &parsed {
        Some(e) => (
            e.code.unwrap_or(status),
            e.message.as_str(),
            e.status.as_str(),
            retry_delay(&e.details),
        ),
        None => (status, "", "", None),
    };
    let status = if (400..600).contains(&status) {
        status
    } else {
        code
    };
    let text = if message.is_empty() {
        let raw = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        if raw.trim().is_empty() {
            format!("{provider} returned HTTP {status}.")
        } else {
            format!("{provider}: {raw}")
        }
    } else {
        format!("{provider}: {message}")
    };
    let lower = message.to_ascii_lowercase();
    let rate_limited = status == 429 || grpc == "RESOURCE_EXHAUSTED";
    let retry_after = if rate_limited {
        retry_after.or(retry_delay)
    } else {
        retry_after
    };
    let err = if rate_limited {
        GatewayError::upstream(429, text).with_code("rate_limit_exceeded")
    } else if is_context_overflow(&lower) {
        GatewayError::upstream(400, text)
            .with_code("context_length_exceeded")
            .with_param("messages")
    } else if status == 401 || grpc == "UNAUTHENTICATED" || lower.contains("api key not valid") {
        GatewayError::credential_refused(text)
    } else if grpc == "UNAVAILABLE" {
        GatewayError::upstream(503, text).with_code("overloaded")
    } else {
        GatewayError::upstream(status, text)
    };
    err.with_retry_after(retry_after)
}

fn is_context_overflow(lower: &str) -> bool {
    (lower.contains("token count") && lower.contains("exceeds"))
        || lower.contains("exceeds the maximum number of tokens")
        || lower.contains("context window")
}

/// Whole seconds from a `google.rpc.RetryInfo` detail (`"34.4s"` → `"35"`).
fn retry_delay(details: &[Value]) -> Option<String> {
    let delay = details.iter().find(|d| {
        d["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
    })?["retryDelay"]
        .as_str()?;
    let secs: f64 = delay.strip_suffix('s')?.parse().ok()?;
    Some((secs.ceil() as u64).to_string())
}

// ---------------------------------------------------------------------------------------------
// Streaming

/// Turns Gemini stream events (each a whole `GenerateContentResponse`) into [`StreamPart`]s.
#[derive(Debug)]
pub struct StreamTranslator {
    provider: &'static str,
    started: bool,
    tool_count: u32,
    /// How many `reasoning_details` items (function calls' thought signatures) have been sent.
    detail_count: u32,
    usage: Option<UsageMetadata>,
    finish: Option<FinishReason>,
    failed: bool,
    /// Whether any answer text or tool call has been seen.
    answered: bool,
    /// The response id of the first event, for generated call ids.
    response_id: Option<String>,
}

impl std::fmt::Debug for UsageMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_usage())
    }
}

impl Default for StreamTranslator {
    fn default() -> Self {
        Self::for_provider(PROVIDER)
    }
}

impl StreamTranslator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A translator whose errors name `provider` (Vertex reuses this one).
    pub(crate) fn for_provider(provider: &'static str) -> Self {
        StreamTranslator {
            provider,
            started: false,
            tool_count: 0,
            detail_count: 0,
            usage: None,
            finish: None,
            failed: false,
            answered: false,
            response_id: None,
        }
    }

    /// Translates one SSE event.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamPart>) {
        if self.failed {
            return;
        }
        let resp: GenerateResponse = match serde_json::from_str(&ev.data) {
            Ok(r) => r,
            Err(_) => return self.fail(unreadable(self.provider), out),
        };
        if resp.error.is_some() {
            let e = translate_google_error(self.provider, 0, None, ev.data.as_bytes());
            return self.fail(e, out);
        }
        if !self.started {
            self.started = true;
            self.response_id = resp.response_id.clone();
            out.push(StreamPart::Start {
                id: resp.response_id.unwrap_or_default(),
                model: resp.model_version.clone().unwrap_or_default(),
            });
        }
        if let Some(u) = resp.usage_metadata.filter(UsageMetadata::has_counts) {
            self.usage = Some(u); // cumulative: the last one wins
        }
        if resp.prompt_feedback.and_then(|f| f.block_reason).is_some() {
            self.finish = Some(FinishReason::ContentFilter);
        }
        if let Some(c) = resp.candidates.into_iter().next() {
            self.candidate(c, out);
        }
    }

    /// Ends the stream with the usage and finish reason, or an error if Gemini never finished.
    pub fn finish(&mut self, out: &mut Vec<StreamPart>) {
        if self.failed {
            return;
        }
        match self.finish {
            Some(FinishReason::Stop) if !self.answered => {
                self.fail(empty_answer(self.provider), out)
            }
            Some(reason) => {
                if let Some(u) = self.usage {
                    out.push(StreamPart::Usage(u.to_usage()));
                }
                out.push(StreamPart::Finish(reason));
                self.failed = true; // nothing more may follow
            }
            None => {
                let e = GatewayError::bad_gateway(format!(
                    "The {} stream ended before a finish reason.",
                    self.provider
                ));
                self.fail(e, out)
            }
        }
    }

    fn fail(&mut self, e: GatewayError, out: &mut Vec<StreamPart>) {
        self.failed = true;
        out.push(StreamPart::Error(e));
    }

    fn candidate(&mut self, c: Candidate, out: &mut Vec<StreamPart>) {
        if let Some(e) = failed_finish(&c, self.provider) {
            return self.fail(e, out);
        }
        for part in c.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(fc) = part.function_call {
                if fc.will_continue == Some(true) {
                    let e = GatewayError::bad_gateway(format!(
                        "{} streamed partial function-call arguments, which the gateway does not request.",
                        self.provider
                    ));
                    return self.fail(e, out);
                }
                let Some(name) = fc.name else { continue };
                let index = self.tool_count;
                self.tool_count += 1;
                let id = call_id(fc.id, index, self.response_id.as_deref());
                if let Some(data) = part.thought_signature.filter(|s| !s.is_empty()) {
                    out.push(StreamPart::ReasoningDetail {
                        index: self.detail_count,
                        detail: ReasoningDetail::ToolCallSignature {
                            id: id.clone(),
                            data,
                        },
                    });
                    self.detail_count += 1;
                }
                self.answered = true;
                out.push(StreamPart::ToolCallStart { index, id, name });
                let args = arguments_text(fc.args.as_deref());
                out.push(StreamPart::ToolCallArgs { index, delta: args });
            } else if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                out.push(if part.thought == Some(true) {
                    StreamPart::ReasoningDelta(text)
                } else {
                    self.answered = true;
                    StreamPart::TextDelta(text)
                });
            }
        }
        if let Some(r) = c.finish_reason {
            self.finish = Some(FinishReason::from_gemini(&r, self.tool_count > 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::openai::testing::{encode_all, Assembled};

    fn request(v: Value) -> ChatRequest {
        ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn body_for(v: Value, model: &str) -> Value {
        serde_json::from_slice(&build_request(&request(v), model).unwrap()).unwrap()
    }

    fn body(v: Value) -> Value {
        body_for(v, "gemini-2.5-flash")
    }

    #[test]
    fn a_conversation_of_instructions_only_becomes_the_user_turn() {
        let b = body(json!({"model": "m", "messages": [{"role": "system", "content": "Say hi"}]}));
        assert_eq!(
            b["contents"],
            json!([{"role": "user", "parts": [{"text": "Say hi"}]}])
        );
        assert!(b.get("systemInstruction").is_none());
    }

    fn refused(v: Value) -> GatewayError {
        build_request(&request(v), "gemini-2.5-flash").unwrap_err()
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/gemini/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Replays a recorded stream at every byte split, then through the translator and encoder.
    fn replay(name: &str) -> (Vec<StreamPart>, Assembled) {
        let events = crate::sse::tests::assert_split_invariant(&fixture(name));
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for ev in &events {
            t.on_event(ev, &mut parts);
        }
        t.finish(&mut parts);
        let assembled = encode_all(parts.clone());
        (parts, assembled)
    }

    #[test]
    fn builds_a_full_request() {
        let params = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false});
        let b = body_for(
            json!({
                "model": "google/gemini", "temperature": 0.2, "top_p": 0.8, "max_completion_tokens": 500,
                "stop": "END", "seed": 3, "presence_penalty": 0.1, "frequency_penalty": 0.2,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": params, "strict": true}}],
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris and Rome?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_0", "content": "{\"temp\":20}"},
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
                ]
            }),
            "gemini-2.0-flash",
        );
        assert_eq!(
            b,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
                    {"role": "model", "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SKIP_THOUGHT_SIGNATURE},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}},
                        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]}
                ],
                "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather", "parametersJsonSchema": params}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
                "generationConfig": {"temperature": 0.2, "topP": 0.8, "maxOutputTokens": 500, "stopSequences": ["END"],
                    "seed": 3, "presencePenalty": 0.1, "frequencyPenalty": 0.2}
            })
        );
    }

    #[test]
    fn penalties_go_only_to_the_model_that_takes_them() {
        let v = |p: Value, f: Value| {
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "presence_penalty": p, "frequency_penalty": f})
        };
        for model in [
            "gemini-2.5-flash",
            "gemini-3-pro-preview",
            "gemini-2.0-flash-thinking-exp",
        ] {
            for (p, f, param) in [
                (json!(0.5), json!(0), "presence_penalty"),
                (json!(0), json!(-0.2), "frequency_penalty"),
            ] {
                let e = build_request(&request(v(p, f)), model).unwrap_err();
                assert_eq!(
                    (e.status, e.param.as_deref()),
                    (400, Some(param)),
                    "{model}"
                );
            }
            // Zero asks for nothing: not sent.
            let b = body_for(v(json!(0), json!(0.0)), model);
            assert!(b.get("generationConfig").is_none(), "{model}: {b}");
        }
        let b = body_for(v(json!(0.5), json!(-0.2)), "gemini-2.0-flash-001");
        assert_eq!(
            b["generationConfig"],
            json!({"presencePenalty": 0.5, "frequencyPenalty": -0.2})
        );
    }

    #[test]
    fn media_parts_become_inline_or_file_data() {
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png?x=1"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER"}},
                {"type": "file", "file": {"file_id": "gs://bucket/doc.pdf"}},
                {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}}
            ]}]}),
        );
        assert_eq!(
            b["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
                {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/a.png?x=1"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/doc.pdf"}},
                {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}}
            ])
        );
    }

    #[test]
    fn tool_choice_json_output_and_candidates() {
        let cfg = |c: Value| {
            body(json!({"model": "m", "messages": [], "tool_choice": c}))["toolConfig"].clone()
        };
        assert_eq!(
            cfg(json!("none")),
            json!({"functionCallingConfig": {"mode": "NONE"}})
        );
        assert_eq!(
            cfg(json!("auto")),
            json!({"functionCallingConfig": {"mode": "AUTO"}})
        );
        assert_eq!(
            cfg(json!("required")),
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let g = &body(
            json!({"model": "m", "messages": [], "n": 2, "response_format":
            {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
        )["generationConfig"];
        assert_eq!(g["responseMimeType"], "application/json");
        assert_eq!(g["responseJsonSchema"], schema);
        assert_eq!(g["candidateCount"], 2);
        let g = &body(
            json!({"model": "m", "messages": [], "response_format": {"type": "json_object"}}),
        )["generationConfig"];
        assert_eq!(g, &json!({"responseMimeType": "application/json"}));
        // The format's description travels in the schema, unless the schema has its own.
        let g = &body(
            json!({"model": "m", "messages": [], "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "description": "A weather report", "schema": schema}}}),
        )["generationConfig"];
        assert_eq!(g["responseJsonSchema"]["description"], "A weather report");
        let own = json!({"type": "object", "description": "its own"});
        let g = &body(
            json!({"model": "m", "messages": [], "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "description": "A weather report", "schema": own}}}),
        )["generationConfig"];
        assert_eq!(g["responseJsonSchema"]["description"], "its own");
    }

    #[test]
    fn reasoning_maps_to_thinking_config_per_model_family() {
        let thinking = |v: Value, model: &str| {
            body_for(v, model)["generationConfig"]["thinkingConfig"].clone()
        };
        let req = |extra: Value| {
            let mut r = json!({"model": "m", "messages": []});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            r
        };
        assert_eq!(
            thinking(req(json!({"reasoning_effort": "low"})), "gemini-2.5-pro"),
            json!({"thinkingBudget": 2048, "includeThoughts": true})
        );
        assert_eq!(
            thinking(
                req(json!({"reasoning_effort": "high"})),
                "gemini-3-pro-preview"
            ),
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
        assert_eq!(
            thinking(
                req(json!({"reasoning": {"max_tokens": 777}})),
                "gemini-3-pro-preview"
            ),
            json!({"thinkingBudget": 777, "includeThoughts": true})
        );
        assert_eq!(
            thinking(req(json!({"reasoning_effort": "none"})), "gemini-2.5-flash"),
            json!({"thinkingBudget": 0})
        );
        assert_eq!(thinking(req(json!({})), "gemini-2.5-flash"), Value::Null);
        // Each model's own levels (Google's thinking guide): the level asked for, else the next
        // one up the model takes; thinking cannot be switched off on Gemini 3 or 2.5 Pro.
        let level = |effort: &str, model: &str| {
            thinking(req(json!({"reasoning_effort": effort})), model)["thinkingLevel"].clone()
        };
        for (effort, model, want) in [
            ("medium", "gemini-3-pro-preview", "high"),
            ("minimal", "gemini-3-pro-preview", "low"),
            ("minimal", "gemini-3.1-pro-preview", "low"),
            ("medium", "gemini-3.1-pro-preview", "medium"),
            ("minimal", "gemini-3-flash-preview", "minimal"),
            ("none", "gemini-3-pro-preview", "low"),
            ("none", "gemini-3-flash-preview", "minimal"),
            // Later generations and the `-latest` aliases take levels too; `xhigh` is `high`.
            ("low", "gemini-4-argon", "low"),
            ("none", "gemini-pro-latest", "low"),
            ("none", "gemini-flash-latest", "minimal"),
            ("xhigh", "gemini-3.1-pro-preview", "high"),
        ] {
            assert_eq!(level(effort, model), json!(want), "{effort} on {model}");
        }
        assert_eq!(
            thinking(req(json!({"reasoning_effort": "none"})), "gemini-2.5-pro"),
            json!({"thinkingBudget": 128})
        );
        assert_eq!(
            thinking(
                req(json!({"reasoning_effort": "xhigh"})),
                "gemini-2.5-flash"
            ),
            json!({"thinkingBudget": 16384, "includeThoughts": true})
        );
        for budget in [
            "gemini-2.5-flash",
            "gemini-exp-1206",
            "gemini-gemma-2-9b-it",
            "gemini-1.5-pro-latest",
        ] {
            assert!(!takes_thinking_levels(budget), "{budget}");
        }
    }

    #[test]
    fn refuses_what_gemini_cannot_honour() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (field, v) in [
            ("logprobs", json!({"logprobs": true})),
            ("top_logprobs", json!({"top_logprobs": 2})),
            ("logit_bias", json!({"logit_bias": {"1": 5}})),
            (
                "parallel_tool_calls",
                json!({"parallel_tool_calls": false, "tools": tools}),
            ),
            ("n", json!({"n": 3, "stream": true})),
            ("audio", json!({"audio": {"voice": "alloy"}})),
        ] {
            let mut req = json!({"model": "m", "messages": []});
            req.as_object_mut()
                .unwrap()
                .extend(v.as_object().unwrap().clone());
            let e = refused(req);
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(field)),
                "{field}"
            );
        }
        let e = refused(
            json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
        let e = refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn endpoint_and_headers() {
        assert_eq!(
            endpoint("https://generativelanguage.googleapis.com", "gemini-2.5-flash", false),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            endpoint("https://generativelanguage.googleapis.com/", "gemini-2.5-flash", true),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(auth_headers("k")[0], ("x-goog-api-key", "k".to_owned()));
    }

    #[test]
    fn translates_a_tool_call_response() {
        let r = translate_response(&fixture("tool_call.json")).unwrap();
        assert_eq!(
            (r.id.as_str(), r.model.as_str()),
            ("m36LaZGyCLz1xs0PtNSB-QU", "gemini-3-pro-preview")
        );
        let c = &r.choices[0];
        assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(
            c.message.tool_calls,
            vec![ResponseToolCall {
                id: "call_m36LaZGyCLz1xs0PtNSB-QU_0".into(),
                name: "weather".into(),
                arguments: "{\"location\":\"San Francisco\"}".into()
            }]
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.total_tokens,
                u.reasoning_tokens
            ),
            (29, 908, 937, Some(893))
        );
    }

    #[test]
    fn translates_text_and_thought_parts() {
        let r = translate_response(&fixture("text_with_thoughts_usage.json")).unwrap();
        assert_eq!(r.choices[0].message.content.as_deref(), Some("There are **3** \"r\"s in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y."));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(r.usage.unwrap().completion_tokens, 29 + 282);
        // Constructed: a thought summary part and two candidates.
        let body = br#"{"candidates":[
            {"content":{"parts":[{"text":"Plan.","thought":true},{"text":"A"}],"role":"model"},"finishReason":"STOP","index":0},
            {"content":{"parts":[{"text":"B"}],"role":"model"},"finishReason":"MAX_TOKENS","index":1}],
            "usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"cachedContentTokenCount":3}}"#;
        let r = translate_response(body).unwrap();
        assert_eq!(r.choices[0].message.reasoning.as_deref(), Some("Plan."));
        assert_eq!(r.choices[0].message.content.as_deref(), Some("A"));
        assert_eq!(
            (r.choices[1].index, r.choices[1].finish_reason),
            (1, Some(FinishReason::Length))
        );
        assert_eq!(r.usage.unwrap().cached_tokens, Some(3));

        // Tool calls without ids in two candidates: no two share a generated id.
        let body = br#"{"responseId":"r9","candidates":[
            {"content":{"parts":[{"functionCall":{"name":"f","args":{}}}],"role":"model"},"finishReason":"STOP","index":0},
            {"content":{"parts":[{"functionCall":{"name":"f","args":{}}}],"role":"model"},"finishReason":"STOP","index":1}]}"#;
        let r = translate_response(body).unwrap();
        let ids: Vec<&str> = r
            .choices
            .iter()
            .map(|c| c.message.tool_calls[0].id.as_str())
            .collect();
        assert_eq!(ids, ["call_r9_0", "call_r9_1_0"]);
    }

    /// What OpenAI clients send that has no Gemini field is handled, never silently mistyped:
    /// a media URL whose type cannot be told is refused (it was sent as a JPEG), a YouTube
    /// link goes as a video, an earlier refusal goes back as the model's text, an earlier audio
    /// answer is refused by name.
    #[test]
    fn media_types_refusals_and_audio_references() {
        let with_image = |url: &str| {
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]})
        };
        let b = body(with_image("https://example.com/a/photo.JPG?size=2"));
        assert_eq!(
            b["contents"][0]["parts"][0]["fileData"]["mimeType"],
            "image/jpeg"
        );
        let b = body(with_image("https://youtu.be/9hE5-98ZeCg"));
        assert_eq!(
            b["contents"][0]["parts"][0]["fileData"],
            json!({"fileUri": "https://youtu.be/9hE5-98ZeCg"})
        );
        // A type no extension tells: the Gemini API finds it itself (Files API URIs); Vertex
        // AI needs it, so there it is refused rather than guessed.
        for url in [
            "https://generativelanguage.googleapis.com/v1beta/files/abc123",
            "https://example.com/download?id=7",
            "https://example.com/v1.2/file",
        ] {
            let b = body(with_image(url));
            assert_eq!(
                b["contents"][0]["parts"][0]["fileData"],
                json!({"fileUri": url}),
                "{url}"
            );
            let req: ChatRequest = serde_json::from_value(with_image(url)).unwrap();
            let e = crate::providers::vertex::build_request(&req, "gemini-2.5-flash", false)
                .unwrap_err();
            assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"), "{url}");
            assert!(e.message.contains("data URL"), "{}", e.message);
        }
        // A YouTube link: no type for the Gemini API, a video for Vertex AI.
        let yt = with_image("https://www.youtube.com/watch?v=9hE5-98ZeCg");
        let req: ChatRequest = serde_json::from_value(yt).unwrap();
        let v: Value = serde_json::from_slice(
            &crate::providers::vertex::build_request(&req, "gemini-2.5-flash", false).unwrap(),
        )
        .unwrap();
        assert_eq!(
            v["contents"][0]["parts"][0]["fileData"]["mimeType"],
            "video/mp4"
        );
        // A file's name tells the type its URI does not (`#` and `?` are part of a name).
        for filename in ["report.pdf", "Q1#2024.PDF"] {
            let b = body(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_id": "gs://bucket/obj", "filename": filename}}]}]}),
            );
            assert_eq!(
                b["contents"][0]["parts"][0]["fileData"]["mimeType"], "application/pdf",
                "{filename}"
            );
        }
        let b = body(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "refusal": "I can't help with that."},
            {"role": "user", "content": "why?"}]}));
        assert_eq!(
            b["contents"][1],
            json!({"role": "model", "parts": [{"text": "I can't help with that."}]})
        );
        let e = refused(json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok", "audio": {"id": "audio_1"}}]}));
        assert_eq!(e.param.as_deref(), Some("messages[1].audio"));
        // Values that only restate OpenAI's defaults are no request for anything.
        let b = body(
            json!({"model": "m", "messages": [], "store": false, "service_tier": "auto", "modalities": ["text"], "safety_identifier": "u1"}),
        );
        assert!(b.get("store").is_none());
        let e = refused(json!({"model": "m", "messages": [], "store": true}));
        assert_eq!(e.param.as_deref(), Some("store"));
        let e = refused(json!({"model": "m", "messages": [], "modalities": ["text", "audio"]}));
        assert_eq!(e.param.as_deref(), Some("modalities"));
    }

    #[test]
    fn maps_google_errors() {
        let e = translate_error(429, None, &fixture("error_resource_exhausted.json"));
        assert_eq!(
            (e.status, e.code.as_deref(), e.retry_after.as_deref()),
            (429, Some("rate_limit_exceeded"), Some("35"))
        );
        assert_eq!(
            e.message,
            "Gemini: You exceeded your current quota, please check your plan."
        );
        let e = translate_error(
            429,
            Some("7".into()),
            &fixture("error_resource_exhausted.json"),
        );
        assert_eq!(
            e.retry_after.as_deref(),
            Some("7"),
            "the Retry-After header wins"
        );
        let e = translate_error(400, None, &fixture("error_invalid_argument.json"));
        assert_eq!((e.status, e.code.as_deref()), (400, None));
        assert_eq!(
            e.message,
            "Gemini: Penalty is not enabled for models/gemini-2.5-flash"
        );
        let long = br#"{"error":{"code":400,"message":"The input token count (1196265) exceeds the maximum number of tokens allowed (1048575).","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            translate_error(400, None, long).code.as_deref(),
            Some("context_length_exceeded")
        );
        let key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(translate_error(400, None, key).status, 502);
        let busy = br#"[{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#;
        assert_eq!(
            translate_error(503, None, busy).code.as_deref(),
            Some("overloaded")
        );
    }

    #[test]
    fn golden_text_stream_with_cumulative_usage() {
        let (parts, a) = replay("text_with_thought_signature.sse");
        assert_eq!(
            parts[0],
            StreamPart::Start {
                id: "bH6LaZW8Fp_3nsEPqtaSwQ4".into(),
                model: "gemini-3-pro-preview".into()
            }
        );
        assert_eq!(
            a.text,
            "There are **3** \"r\"s in strawberry.\n\nst**r**awbe**rr**y"
        );
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            a.usage.unwrap(),
            json!({"prompt_tokens": 9, "completion_tokens": 208, "total_tokens": 217,
                   "completion_tokens_details": {"reasoning_tokens": 185}}),
            "the last usageMetadata counts, never the sum"
        );
    }

    #[test]
    fn golden_tool_call_stream_gets_a_generated_id() {
        let (_, a) = replay("tool_call.sse");
        let (id, name, args) = &a.tools[&0];
        assert_eq!(
            (id.as_str(), name.as_str()),
            ("call_b36LacjwM668nsEP2tbsgQQ_0", "weather")
        );
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"location": "San Francisco"})
        );
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(a.usage.unwrap()["completion_tokens"], 60);
    }

    #[test]
    fn golden_tool_call_stream_keeps_geminis_own_id() {
        let (_, a) = replay("recursive_tool_call.sse");
        let (id, name, args) = &a.tools[&0];
        assert_eq!((id.as_str(), name.as_str()), ("call_345658", "search"));
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"condition": {"or": [{"term": "x"}, {"term": "y"}]}})
        );
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(a.usage.unwrap()["prompt_tokens"], 694);
    }

    /// Constructed: arguments whose keys are not in alphabetical order, pretty-printed as
    /// `generateContent` answers are. The client gets them compact, in the model's order.
    #[test]
    fn function_call_arguments_keep_the_models_key_order() {
        let body = br#"{
  "candidates": [{
    "content": {"role": "model", "parts": [
      {"functionCall": {"name": "get_weather", "args": {
        "unit": "celsius",
        "city": "New York",
        "note": "a \"quoted\" word, a  double space"
      }}},
      {"functionCall": {"name": "get_time"}}
    ]},
    "finishReason": "STOP"
  }]
}"#;
        let r = translate_response(body).unwrap();
        let calls = &r.choices[0].message.tool_calls;
        assert_eq!(
            calls[0].arguments,
            r#"{"unit":"celsius","city":"New York","note":"a \"quoted\" word, a  double space"}"#
        );
        assert_eq!(calls[1].arguments, "{}");

        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        let data = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"z":1,"a":{"y":2,"b":3}}}}]},"finishReason":"STOP"}]}"#;
        t.on_event(
            &SseEvent {
                event: None,
                data: data.into(),
            },
            &mut parts,
        );
        t.finish(&mut parts);
        assert!(parts.contains(&StreamPart::ToolCallArgs {
            index: 0,
            delta: r#"{"z":1,"a":{"y":2,"b":3}}"#.into()
        }));
    }

    /// Generated ids must not repeat across the turns of a conversation: a history with two
    #[test]
    fn a_function_calls_thought_signature_goes_out_and_comes_back_with_it() {
        // Out: non-streamed and streamed, named by the call's id.
        let data = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{}},"thoughtSignature":"c2lnLWY="},{"functionCall":{"name":"g","args":{}}}]},"finishReason":"STOP"}],"responseId":"r1"}"#;
        let m = &translate_response(data.as_bytes()).unwrap().choices[0].message;
        assert_eq!(
            m.reasoning_details,
            vec![ReasoningDetail::ToolCallSignature {
                id: "call_r1_0".into(),
                data: "c2lnLWY=".into()
            }]
        );
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        t.on_event(
            &SseEvent {
                event: None,
                data: data.into(),
            },
            &mut parts,
        );
        assert_eq!(
            parts[1..3],
            [
                StreamPart::ReasoningDetail {
                    index: 0,
                    detail: ReasoningDetail::ToolCallSignature {
                        id: "call_r1_0".into(),
                        data: "c2lnLWY=".into()
                    }
                },
                StreamPart::ToolCallStart {
                    index: 0,
                    id: "call_r1_0".into(),
                    name: "f".into()
                }
            ],
            "{parts:?}"
        );
        // Back: each call gets its own signature; without one, the first gets the placeholder.
        let turn = |details: Value| {
            body(json!({"model": "m", "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": null, "reasoning_details": details, "tool_calls": [
                    {"id": "call_r1_0", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                    {"id": "call_r1_1", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_r1_0", "content": "1"},
                {"role": "tool", "tool_call_id": "call_r1_1", "content": "2"}
            ]}))["contents"][1]["parts"]
                .clone()
        };
        let given = turn(json!([
            {"type": "reasoning.text", "text": "claude's", "signature": "x", "format": "anthropic-claude-v1"},
            {"type": "reasoning.encrypted", "data": "c2lnLWc=", "id": "call_r1_1", "format": "google-gemini-v1", "index": 1},
            {"type": "reasoning.encrypted", "data": "c2lnLWY=", "id": "call_r1_0", "format": "google-gemini-v1", "index": 0}
        ]));
        assert_eq!(given[0]["thoughtSignature"], "c2lnLWY=");
        assert_eq!(given[1]["thoughtSignature"], "c2lnLWc=");
        let none = turn(json!([]));
        assert_eq!(none[0]["thoughtSignature"], SKIP_THOUGHT_SIGNATURE);
        assert!(none[1].get("thoughtSignature").is_none());
    }

    /// `call_0`s is refused by Anthropic ("`tool_use` ids must be unique").
    #[test]
    fn generated_call_ids_are_unique_across_responses() {
        let turn = |response_id: &str| {
            format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"functionCall":{{"name":"f","args":{{}}}}}},{{"functionCall":{{"name":"g"}}}}]}},"finishReason":"STOP"}}],"responseId":"{response_id}"}}"#
            )
        };
        let ids = |body: String| -> Vec<String> {
            translate_response(body.as_bytes()).unwrap().choices[0]
                .message
                .tool_calls
                .iter()
                .map(|t| t.id.clone())
                .collect()
        };
        let first = ids(turn("AbC-12_x"));
        let second = ids(turn("ZyX-98_q"));
        assert_eq!(first, ["call_AbC-12_x_0", "call_AbC-12_x_1"]);
        assert_eq!(second, ["call_ZyX-98_q_0", "call_ZyX-98_q_1"]);
        // Characters outside [A-Za-z0-9_-] are dropped; no response id: call_<n>.
        assert_eq!(ids(turn("a.b/c+d=")), ["call_abcd_0", "call_abcd_1"]);
        assert_eq!(ids(turn("")), ["call_0", "call_1"]);
        // Gemini's own ids win.
        let own = br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","id":"fc_7"}}]}}],"responseId":"r"}"#;
        assert_eq!(
            translate_response(own).unwrap().choices[0]
                .message
                .tool_calls[0]
                .id,
            "fc_7"
        );
        // The same ids in a stream.
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        t.on_event(
            &SseEvent {
                event: None,
                data: turn("AbC-12_x"),
            },
            &mut parts,
        );
        assert!(parts.contains(&StreamPart::ToolCallStart {
            index: 1,
            id: "call_AbC-12_x_1".into(),
            name: "g".into()
        }));
    }

    #[test]
    fn golden_blocked_prompt_is_a_content_filter_finish() {
        let (_, a) = replay("prompt_blocked.sse");
        assert_eq!(a.finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(
            (a.text.as_str(), a.usage.unwrap()["prompt_tokens"].as_u64()),
            ("", Some(9))
        );
    }

    #[test]
    fn no_candidates_is_a_content_filter_when_blocked_and_a_failure_otherwise() {
        let blocked = br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9}}"#;
        let r = translate_response(blocked).unwrap();
        assert_eq!(
            r.choices[0].finish_reason,
            Some(FinishReason::ContentFilter)
        );
        for empty in [
            &br#"{"candidates":[],"usageMetadata":{"promptTokenCount":9}}"#[..],
            br#"{"modelVersion":"gemini-2.5-flash"}"#,
        ] {
            let e = translate_response(empty).unwrap_err();
            assert_eq!(e.status, 502, "{}", String::from_utf8_lossy(empty));
        }
    }

    /// The client's view of a stream of Gemini events (each one event's data).
    #[test]
    fn an_empty_finished_answer_fails_the_attempt_rather_than_passing_as_stop() {
        // Gemini's known empty answer (recorded in LiteLLM #24442): STOP, no parts.
        let empty = r#"{"candidates":[{"content":{"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":3130,"totalTokenCount":3130},"responseId":"r"}"#;
        let thought_only = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hmm","thought":true}]},"finishReason":"STOP"}]}"#;
        let other = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"OTHER"}]}"#;
        for body in [empty, thought_only, other] {
            let e = translate_response(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, 502, "{body}");
            assert_eq!(e.code.as_deref(), Some("upstream_empty_answer"));
            let a = translate_events(&[body]);
            assert!(a.finish_reason.is_none(), "{body}");
            assert_eq!(a.error.unwrap()["error"]["code"], "upstream_empty_answer");
            assert!(a.done);
        }
        // Answers stand: text, a tool call, a length or filter finish, one empty candidate of two.
        let text = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}"#;
        let call = r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP"}]}"#;
        let length = r#"{"candidates":[{"content":{"role":"model"},"finishReason":"MAX_TOKENS"}]}"#;
        let safety = r#"{"candidates":[{"finishReason":"SAFETY"}]}"#;
        let two = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]},"finishReason":"STOP","index":0},{"content":{"role":"model"},"finishReason":"STOP","index":1}]}"#;
        for (body, finish) in [
            (text, "stop"),
            (call, "tool_calls"),
            (length, "length"),
            (safety, "content_filter"),
        ] {
            assert!(translate_response(body.as_bytes()).is_ok(), "{body}");
            assert_eq!(
                translate_events(&[body]).finish_reason.as_deref(),
                Some(finish)
            );
        }
        assert_eq!(translate_response(two.as_bytes()).unwrap().choices.len(), 2);
        // A stream's usual ending: text, then an empty text with STOP.
        let a = translate_events(&[
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hi"}]}}]}"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP"}]}"#,
        ]);
        assert_eq!(
            (a.text.as_str(), a.finish_reason.as_deref()),
            ("Hi", Some("stop"))
        );
    }

    fn translate_events(events: &[&str]) -> Assembled {
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for data in events {
            let ev = SseEvent {
                event: None,
                data: (*data).into(),
            };
            t.on_event(&ev, &mut parts);
        }
        t.finish(&mut parts);
        encode_all(parts)
    }

    /// Constructed (finish reasons from python-genai's `FinishReason`): a malformed or unasked-for
    /// tool call fails the answer, streamed or not, with Google's message; Vertex's Model
    /// Armor and the image filters are content filters.
    #[test]
    fn a_malformed_function_call_is_a_failure_not_a_stop() {
        let event = r#"{"candidates":[{"content":{"role":"model"},"finishReason":"MALFORMED_FUNCTION_CALL","finishMessage":"Malformed function call: print(x","index":0}],"usageMetadata":{"promptTokenCount":10},"responseId":"r1"}"#;
        let e = translate_response(event.as_bytes()).unwrap_err();
        assert_eq!(e.status, 502);
        assert_eq!(e.code.as_deref(), Some("upstream_invalid_tool_call"));
        assert!(
            e.message.contains("Malformed function call: print(x"),
            "{}",
            e.message
        );

        let text = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me call it"}]},"index":0}],"responseId":"r1"}"#;
        let a = translate_events(&[text, event]);
        assert_eq!(a.text, "Let me call it");
        assert!(a.finish_reason.is_none(), "never a clean stop");
        assert_eq!(
            a.error.unwrap()["error"]["code"],
            "upstream_invalid_tool_call"
        );

        for reason in [
            "MODEL_ARMOR",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
        ] {
            assert_eq!(
                FinishReason::from_gemini(reason, false),
                FinishReason::ContentFilter
            );
        }
    }

    /// Constructed: thought parts, several calls in one event, usage in a trailing event.
    #[test]
    fn thoughts_parallel_calls_and_late_usage() {
        let events = [
            r#"{"candidates":[{"content":{"parts":[{"text":"Plan: call both.","thought":true}],"role":"model"},"index":0}],"responseId":"r1","modelVersion":"gemini-2.5-flash"}"#,
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{"x":1}}},{"functionCall":{"name":"b"}}],"role":"model"},"finishReason":"STOP","index":0}]}"#,
            r#"{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"thoughtsTokenCount":6,"cachedContentTokenCount":8}}"#,
        ];
        let a = translate_events(&events);
        assert_eq!(a.reasoning, "Plan: call both.");
        assert_eq!(
            a.tools[&0],
            ("call_r1_0".into(), "a".into(), "{\"x\":1}".into())
        );
        assert_eq!(a.tools[&1], ("call_r1_1".into(), "b".into(), "{}".into()));
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            a.usage.unwrap(),
            json!({"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 6}})
        );
    }

    #[test]
    fn cut_streams_and_error_events_never_look_like_success() {
        let bytes = fixture("text_with_thought_signature.sse");
        let first_event_end = bytes.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        let events = crate::sse::tests::assert_split_invariant(&bytes[..first_event_end]);
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        t.on_event(&events[0], &mut parts);
        t.finish(&mut parts);
        assert!(matches!(parts.last(), Some(StreamPart::Error(e)) if e.status == 502));
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        let err = r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#;
        t.on_event(
            &SseEvent {
                event: None,
                data: err.into(),
            },
            &mut parts,
        );
        t.finish(&mut parts);
        assert_eq!(parts.len(), 1);
        assert!(matches!(&parts[0], StreamPart::Error(e) if e.status == 429));
    }
}

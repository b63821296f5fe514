//! Anthropic Messages: request builder, response and error translation, stream translator.
//!
//! Mapping decisions (each refusal is a 400 naming the field):
//! * `system` and `developer` messages, wherever they appear, become the top-level `system`
//!   blocks in order; consecutive turns of one role are merged (tool results are user turns).
//! * Images: `data:` URLs become base64 sources, `http(s)` URLs become url sources; `detail` has
//!   no Anthropic equivalent and is ignored. PDF and plain-text files (inline `file_data`)
//!   become `document` blocks titled by `filename` (text as a text source, so it must be
//!   UTF-8); other file types, `file_id` and `input_audio` are refused.
//! * `response_format: json_schema` maps to native structured outputs
//!   (`output_config.format`); `json_object` is refused (Anthropic has no schema-less JSON mode).
//! * Refused: `n > 1`, `logprobs`, `top_logprobs`, `logit_bias`, `seed`, non-zero
//!   `presence_penalty`/`frequency_penalty`, `temperature > 1`, stop sequences that are empty
//!   or whitespace, unknown top-level fields; sampling a model does not take (see
//!   `Sampling`: both `temperature` and `top_p` on Opus 4.1 and the 4.5/4.6 models, either on
//!   Opus 4.7 and Claude 5), where a value restating the default (1) is left out instead.
//! * `user` (else `safety_identifier`) becomes `metadata.user_id` (as its SHA-256 when it looks
//!   like an email address or a phone number, which Anthropic refuses); OpenAI's `metadata` (for
//!   stored completions) and a message's `name` have no Anthropic field and are not forwarded.
//!   An assistant turn's `refusal` goes back as its text; its `audio` (an earlier OpenAI audio
//!   answer) is refused.
//! * Adjusted where OpenAI takes what Anthropic refuses: whitespace-only text is left out, a
//!   final assistant turn (prefill) loses its trailing whitespace, data-URL media types are
//!   normalised (`image/jpg` → `image/jpeg`, parameters dropped), and a conversation of
//!   instructions only sends them as the user turn.
//! * Reasoning on Claude 4.6 and later (adaptive thinking; Opus 4.7 and later take nothing
//!   else): `thinking: {type: adaptive}` with `output_config.effort` (`minimal` → `low`; an
//!   explicit budget → the level whose budget covers it). On earlier models a budget (or an
//!   effort level's budget, see [`ReasoningEffort::budget_tokens`]) becomes
//!   `thinking: {type: enabled, budget_tokens}`. Anthropic counts thinking inside
//!   `max_tokens`; without a client limit the gateway asks for the level's budget plus
//!   [`DEFAULT_MAX_TOKENS`]. With a client limit an effort's budget is capped at half of it.
//!   A budget-thinking request that continues after tool results is sent without thinking:
//!   Anthropic needs that turn's signed thinking block back, which OpenAI clients cannot send.
//!   A forced tool call (`tool_choice` required or named) goes without thinking, which
//!   Anthropic takes only with `auto`/`none` (an adaptive model keeps its effort level).
//! * Left to Anthropic to reject (its 400 is passed on, named): thinking combined with a changed
//!   `temperature`.

use super::turns::Turns;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::canonical::{
    compact_json, parse_data_url, AssistantMessage, ChatRequest, ChatResponse, Choice, Content,
    ContentPart, FinishReason, Message, Reasoning, ReasoningDetail, ReasoningEffort,
    ResponseFormat, ResponseToolCall, StreamPart, ToolChoice, Usage,
};
use crate::error::GatewayError;
use crate::sse::SseEvent;

/// The `anthropic-version` header value.
pub const API_VERSION: &str = "2023-06-01";
/// The answer budget when the client sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Anthropic's smallest thinking budget.
pub const MIN_THINKING_BUDGET: u64 = 1024;
const PROVIDER: &str = "Anthropic";

/// `POST {base}/v1/messages` (streaming is chosen in the body).
pub fn endpoint(base_url: &str, _native_model: &str, _stream: bool) -> String {
    format!("{}/v1/messages", base_url.trim_end_matches('/'))
}

/// The headers every Anthropic request carries.
pub fn auth_headers(api_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-api-key", api_key.to_owned()),
        ("anthropic-version", API_VERSION.to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
}

/// The native request body for `req`, or a 400 for what Anthropic cannot honour.
pub fn build_request(req: &ChatRequest, native_model: &str) -> Result<Vec<u8>, GatewayError> {
    let body = build_body(req, native_model)?;
    Ok(serde_json::to_vec(&Value::Object(body)).expect("body serializes"))
}

/// The body as a JSON object, for callers (Vertex) that adjust it.
pub(crate) fn build_body(
    req: &ChatRequest,
    native_model: &str,
) -> Result<Map<String, Value>, GatewayError> {
    check_supported(req)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(native_model));
    let (system, messages) = convert_messages(&req.messages)?;
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let mut output_config = Map::new();
    // Anthropic takes thinking only with `tool_choice` auto or none: a forced tool call (a
    // constraint the client's logic relies on) goes without thinking (a depth hint).
    let forced_tool = matches!(
        req.tool_choice,
        Some(ToolChoice::Required | ToolChoice::Function(_))
    );
    if adaptive_thinking(native_model) {
        let effort = adaptive_effort(req.reasoning(), native_model);
        let thinking_room = match effort {
            Some(e) if !forced_tool => e.budget_tokens(),
            _ => 0,
        };
        let max_tokens = req
            .max_output_tokens()
            .unwrap_or(DEFAULT_MAX_TOKENS + thinking_room);
        body.insert("max_tokens".into(), json!(max_tokens));
        if let Some(e) = effort {
            // Opus 4.7 and later omit the thinking text unless asked for its summary (what
            // earlier models send by default); the client asked to see reasoning.
            if !forced_tool {
                body.insert(
                    "thinking".into(),
                    json!({"type": "adaptive", "display": "summarized"}),
                );
            }
            output_config.insert("effort".into(), json!(e.as_str()));
        }
    } else {
        // (No budget to check or make room for when none is sent.)
        let (max_tokens, budget) = if forced_tool {
            (req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS), None)
        } else {
            max_tokens_and_budget(req)?
        };
        body.insert("max_tokens".into(), json!(max_tokens));
        // A turn that continues after tool results must open with the thinking block that
        // preceded its tool calls, signed (given back as `reasoning_details`): without it
        // Anthropic refuses budget thinking there ("a final `assistant` message must start with
        // a thinking block") and says to switch it off, so that turn goes on without thinking.
        let budget = budget.filter(|_| !continues_after_tool_results_without_thinking(&body));
        if let Some(b) = budget {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
    }
    // Thinking given back is for a request that thinks (Anthropic refuses it in the final
    // assistant turn otherwise), and only the current turn's.
    let thinks = body.contains_key("thinking");
    strip_thinking_blocks(&mut body, !thinks);
    insert_sampling(req, native_model, &mut body)?;
    insert_tools(req, &mut body)?;
    if let Some(ResponseFormat::JsonSchema { json_schema }) = &req.response_format {
        let schema = json_schema.schema_for_provider()?;
        output_config.insert(
            "format".into(),
            json!({"type": "json_schema", "schema": schema}),
        );
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    if let Some(user) = req.end_user() {
        body.insert("metadata".into(), json!({"user_id": opaque_user_id(user)}));
    }
    if req.is_stream() {
        body.insert("stream".into(), json!(true));
    }
    Ok(body)
}

/// `metadata.user_id` must be an opaque id: Anthropic refuses one that looks like an email
/// address or a phone number, which OpenAI's `user` often is. Those are sent as their SHA-256
/// (still one stable id per end user); other ids as they are.
fn opaque_user_id(user: &str) -> String {
    let digits = user.bytes().filter(u8::is_ascii_digit).count();
    if user.contains('@') || digits >= 7 {
        crate::auth::hash_secret(user)
    } else {
        user.to_owned()
    }
}

fn unsupported(field: &str) -> GatewayError {
    GatewayError::invalid_param(field, format!("`{field}` is not supported by {PROVIDER}."))
}

fn check_supported(req: &ChatRequest) -> Result<(), GatewayError> {
    if let Some(field) = req.first_unknown_field() {
        return Err(unsupported(field));
    }
    let nonzero = |v: Option<f64>| v.is_some_and(|x| x != 0.0);
    let checks: [(&str, bool); 8] = [
        ("n", req.n.is_some_and(|n| n > 1)),
        ("logprobs", req.logprobs == Some(true)),
        ("top_logprobs", req.top_logprobs.is_some_and(|n| n > 0)),
        (
            "logit_bias",
            req.logit_bias.as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("seed", req.seed.is_some()),
        ("presence_penalty", nonzero(req.presence_penalty)),
        ("frequency_penalty", nonzero(req.frequency_penalty)),
        (
            "response_format",
            matches!(req.response_format, Some(ResponseFormat::JsonObject)),
        ),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, bad)| *bad) {
        return Err(unsupported(field));
    }
    if req
        .stop
        .as_ref()
        .is_some_and(|s| s.as_slice().iter().any(|s| s.trim().is_empty()))
    {
        return Err(GatewayError::invalid_param(
            "stop",
            format!("{PROVIDER} takes no stop sequence that is empty or only whitespace."),
        ));
    }
    if req.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(GatewayError::invalid_param(
            "temperature",
            format!("`temperature` must be between 0 and 1 for {PROVIDER} models."),
        ));
    }
    Ok(())
}

fn is_thinking_block(block: &Value) -> bool {
    block["type"] == "thinking" || block["type"] == "redacted_thinking"
}

fn holds_tool_results(message: &Value) -> bool {
    message["content"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
}

/// Where the assistant's current turn starts: after the last user message that is not tool
/// results (a tool loop is one assistant turn, its messages alternating with tool results).
fn current_turn_start(messages: &[Value]) -> usize {
    messages
        .iter()
        .rposition(|m| m["role"] == "user" && !holds_tool_results(m))
        .map_or(0, |i| i + 1)
}

/// Whether the conversation in `body` ends with tool results (a tool loop under way) and the
/// turn's first assistant message does not open with its thinking (which Anthropic requires
/// back, signed, when thinking is on).
fn continues_after_tool_results_without_thinking(body: &Map<String, Value>) -> bool {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return false;
    };
    let Some(last) = messages.last() else {
        return false;
    };
    let after_tools = last["role"] == "user" && holds_tool_results(last);
    let opens_with_thinking = messages[current_turn_start(messages)..]
        .iter()
        .find(|m| m["role"] == "assistant")
        .and_then(|m| m["content"].as_array()?.first().map(is_thinking_block))
        .unwrap_or(false);
    after_tools && !opens_with_thinking
}

/// Removes thinking given back from assistant messages: from all of them (`all`), or from
/// those of earlier turns (which Anthropic does not need, and whose signatures another model
/// of a fallback would refuse). A message left empty goes too.
fn strip_thinking_blocks(body: &mut Map<String, Value>, all: bool) {
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    let keep_from = if all {
        messages.len()
    } else {
        current_turn_start(messages)
    };
    for m in messages[..keep_from].iter_mut() {
        if m["role"] == "assistant" {
            if let Some(blocks) = m["content"].as_array_mut() {
                blocks.retain(|b| !is_thinking_block(b));
            }
        }
    }
    messages.retain(|m| m["content"].as_array().is_none_or(|b| !b.is_empty()));
}

/// A Claude model id's family and version: `claude-<family>-<major>[-<minor>]` (`claude-opus-4-7`
/// → `("opus", 4, Some(7))`; `claude-sonnet-4-20250514` → `("sonnet", 4, None)`: a minor version
/// has one or two digits, a date eight). A Vertex version suffix (`@20260416`) is ignored. `None`
/// for the old `claude-3-5-sonnet` naming and ids that are not Claude's.
fn claude_version(native_model: &str) -> Option<(&str, u32, Option<u32>)> {
    let id = native_model.split('@').next().unwrap_or(native_model);
    let mut parts = id.strip_prefix("claude-")?.split('-');
    let family = parts
        .next()
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()
        .filter(|p| p.len() <= 2)
        .and_then(|p| p.parse().ok());
    Some((family, major, minor))
}

/// Whether a Claude model thinks adaptively (`thinking: {type: adaptive}`, depth set by
/// `output_config.effort`): Claude 4.6 and every later model. From Opus 4.7 on a fixed budget
/// (`type: enabled`) is refused; 4.6 takes both, and Anthropic recommends adaptive there.
/// Earlier models (`claude-3-…`, `claude-<family>-4`, `-4-1` … `-4-5`) and ids the gateway
/// does not recognise keep budgets.
fn adaptive_thinking(native_model: &str) -> bool {
    match claude_version(native_model) {
        Some((_, major, _)) if major >= 5 => true,
        Some((_, 4, minor)) => minor.is_some_and(|n| n >= 6),
        _ => false,
    }
}

/// Whether a Claude model takes the effort level `xhigh`: Opus from 4.7, every model from
/// Claude 5 (Anthropic's effort guide; Opus and Sonnet 4.6 stop at `high` below `max`).
fn takes_xhigh(native_model: &str) -> bool {
    match claude_version(native_model) {
        Some((_, major, _)) if major >= 5 => true,
        Some((family, 4, minor)) => family == "opus" && minor.is_some_and(|n| n >= 7),
        _ => false,
    }
}

/// Which sampling parameters (`temperature`, `top_p`) a Claude model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sampling {
    /// Both, together or alone (Claude 3, Claude 4.0, ids the gateway does not recognise).
    Both,
    /// One of them per request: Opus 4.1 and the 4.5 and 4.6 models refuse both together.
    OneOf,
    /// None: Opus 4.7 and every Claude 5 model refuse them ("deprecated for this model").
    Neither,
}

fn sampling(native_model: &str) -> Sampling {
    match claude_version(native_model) {
        Some((_, major, _)) if major >= 5 => Sampling::Neither,
        Some((_, 4, Some(minor))) if minor >= 7 => Sampling::Neither,
        Some((_, 4, Some(minor))) if minor >= 1 => Sampling::OneOf,
        _ => Sampling::Both,
    }
}

/// The effort level of an adaptive-thinking request (`None`: no thinking asked for). An explicit
/// token budget becomes the level whose budget covers it: adaptive models take no budget.
fn adaptive_effort(reasoning: Reasoning, native_model: &str) -> Option<ReasoningEffort> {
    let level = match reasoning {
        Reasoning::Default | Reasoning::Off | Reasoning::Effort(ReasoningEffort::None) => {
            return None
        }
        Reasoning::Effort(ReasoningEffort::Minimal) => ReasoningEffort::Low,
        Reasoning::Effort(ReasoningEffort::XHigh) if !takes_xhigh(native_model) => {
            ReasoningEffort::High
        }
        Reasoning::Effort(e) => e,
        Reasoning::Budget(b) if b <= ReasoningEffort::Low.budget_tokens() => ReasoningEffort::Low,
        Reasoning::Budget(b) if b <= ReasoningEffort::Medium.budget_tokens() => {
            ReasoningEffort::Medium
        }
        Reasoning::Budget(_) => ReasoningEffort::High,
    };
    Some(level)
}

fn max_tokens_and_budget(req: &ChatRequest) -> Result<(u64, Option<u64>), GatewayError> {
    let given = req.max_output_tokens();
    let budget = match req.reasoning() {
        Reasoning::Default | Reasoning::Off => {
            return Ok((given.unwrap_or(DEFAULT_MAX_TOKENS), None))
        }
        Reasoning::Budget(b) if b < MIN_THINKING_BUDGET => {
            let param = req.reasoning_budget_param();
            return Err(GatewayError::invalid_param(
                param,
                format!(
                    "{PROVIDER} needs a reasoning budget of at least {MIN_THINKING_BUDGET} \
                     tokens; `{param}` is {b}."
                ),
            ));
        }
        Reasoning::Budget(b) => b,
        // Half the answer's room, at most the level's budget, at least Anthropic's minimum.
        Reasoning::Effort(e) => match given {
            Some(max) if max <= MIN_THINKING_BUDGET => {
                let param = req.max_output_tokens_param();
                return Err(GatewayError::invalid_param(
                    param,
                    format!(
                        "`{param}` ({max}) leaves no room for reasoning: {PROVIDER} needs a \
                         budget of at least {MIN_THINKING_BUDGET} tokens below it. Raise it, or \
                         turn reasoning off."
                    ),
                ));
            }
            Some(max) => e.budget_tokens().min(max / 2).max(MIN_THINKING_BUDGET),
            None => e.budget_tokens(),
        },
    };
    let max = given.unwrap_or(budget.saturating_add(DEFAULT_MAX_TOKENS));
    if max <= budget {
        let param = req.max_output_tokens_param();
        return Err(GatewayError::invalid_param(
            param,
            format!("`{param}` ({max}) must be larger than the reasoning budget ({budget})."),
        ));
    }
    Ok((max, Some(budget)))
}

/// `temperature`, `top_p` and the stop sequences, as far as `native_model` takes them (see
/// [`Sampling`]). A value equal to Anthropic's default (1) asks for nothing and is left out where
/// the model would refuse it; any other value it would refuse is a 400 naming it, as OpenAI
/// answers for its reasoning models, so that a fallback can serve.
fn insert_sampling(
    req: &ChatRequest,
    native_model: &str,
    body: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    let (mut temperature, mut top_p) = (req.temperature, req.top_p);
    let is_default = |v: Option<f64>| v == Some(1.0);
    match sampling(native_model) {
        Sampling::Both => {}
        Sampling::OneOf if temperature.is_some() && top_p.is_some() => {
            if is_default(top_p) {
                top_p = None;
            } else if is_default(temperature) {
                temperature = None;
            } else {
                return Err(GatewayError::invalid_param(
                    "top_p",
                    format!(
                        "`{native_model}` takes `temperature` or `top_p`, not both: {PROVIDER} \
                         refuses the two together for this model."
                    ),
                ));
            }
        }
        Sampling::OneOf => {}
        Sampling::Neither => {
            for (param, value) in [("temperature", &mut temperature), ("top_p", &mut top_p)] {
                if value.is_some() && !is_default(*value) {
                    return Err(GatewayError::invalid_param(
                        param,
                        format!(
                            "`{native_model}` takes no `{param}` ({PROVIDER} sets its sampling \
                             itself for this model): leave it out."
                        ),
                    ));
                }
                *value = None;
            }
        }
    }
    if let Some(t) = temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(stop) = &req.stop {
        body.insert("stop_sequences".into(), json!(stop.to_vec()));
    }
    Ok(())
}

fn insert_tools(req: &ChatRequest, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
    if let Some(tools) = &req.tools {
        let mut out = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            if t.kind != "function" {
                return Err(GatewayError::invalid_param(
                    &format!("tools[{i}].type"),
                    format!("Tool type `{}` is not supported by {PROVIDER}.", t.kind),
                ));
            }
            let f = &t.function;
            let mut tool = Map::new();
            tool.insert("name".into(), json!(f.name));
            if let Some(d) = &f.description {
                tool.insert("description".into(), json!(d));
            }
            let schema = f
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            tool.insert("input_schema".into(), schema);
            if let Some(strict) = f.strict {
                tool.insert("strict".into(), json!(strict));
            }
            out.push(Value::Object(tool));
        }
        body.insert("tools".into(), Value::Array(out));
    }
    let parallel_off = req.parallel_tool_calls == Some(false);
    let choice = match &req.tool_choice {
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
        None if parallel_off && req.tools.is_some() => Some(json!({"type": "auto"})),
        None => None,
    };
    if let Some(mut choice) = choice {
        if parallel_off && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

fn convert_messages(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), GatewayError> {
    let mut system = Vec::new();
    let mut turns = Turns::new("content");
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}].content");
        match m {
            Message::System { content } | Message::Developer { content } => {
                push_text(&mut system, content.text_only(&param)?);
            }
            Message::User { content } => turns.push("user", user_blocks(content, &param)?),
            Message::Assistant {
                content,
                tool_calls,
                refusal,
                audio,
                reasoning_details,
            } => {
                if audio.as_ref().is_some_and(|a| !a.is_null()) {
                    return Err(super::native::audio_reference_refused(i, PROVIDER));
                }
                let mut blocks = Vec::new();
                // The turn's thinking first, as Claude wrote it (build_request leaves it out
                // again when the request does not think).
                for detail in crate::canonical::anthropic_thinking(reasoning_details) {
                    match detail {
                        ReasoningDetail::Text { text, signature } => blocks.push(
                            json!({"type": "thinking", "thinking": text, "signature": signature}),
                        ),
                        ReasoningDetail::Encrypted { data } => {
                            blocks.push(json!({"type": "redacted_thinking", "data": data}))
                        }
                        ReasoningDetail::ToolCallSignature { .. } => {}
                    }
                }
                if let Some(c) = content {
                    push_text(&mut blocks, c.text_only(&param)?);
                }
                push_text(&mut blocks, refusal.clone().unwrap_or_default());
                for (j, tc) in tool_calls.iter().flatten().enumerate() {
                    let input = parse_arguments(&tc.function.arguments, i, j)?;
                    blocks.push(json!({"type": "tool_use", "id": tc.id, "name": tc.function.name, "input": input}));
                }
                turns.push("assistant", blocks);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let text = content.text_only(&param)?;
                turns.push(
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": text})],
                );
            }
        }
    }
    let mut turns = turns.finish();
    if turns.is_empty() && !system.is_empty() {
        // Only instructions (OpenAI answers those; Anthropic needs a turn): they are the turn.
        turns.push(json!({"role": "user", "content": std::mem::take(&mut system)}));
    }
    // A turn merged from several assistant messages opens with all their thinking.
    for turn in turns.iter_mut().filter(|t| t["role"] == "assistant") {
        if let Some(blocks) = turn["content"].as_array_mut() {
            blocks.sort_by_key(|b| !is_thinking_block(b));
        }
    }
    trim_prefill(&mut turns);
    Ok((system, turns))
}

/// Text blocks Anthropic takes: it refuses text that is empty or only whitespace.
fn push_text(blocks: &mut Vec<Value>, text: String) {
    if !text.trim().is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
}

/// A conversation ending in an assistant turn asks Claude to continue it (prefill), and
/// Anthropic refuses a prefill that ends in whitespace: it is trimmed off.
fn trim_prefill(turns: &mut [Value]) {
    let Some(last) = turns.last_mut().filter(|t| t["role"] == "assistant") else {
        return;
    };
    if let Some(block) = last["content"]
        .as_array_mut()
        .and_then(|blocks| blocks.last_mut())
        .filter(|b| b["type"] == "text")
    {
        if let Some(text) = block["text"].as_str() {
            block["text"] = json!(text.trim_end());
        }
    }
}

/// Parses tool-call arguments; an empty string means no arguments.
pub(crate) fn parse_arguments(args: &str, msg: usize, call: usize) -> Result<Value, GatewayError> {
    if args.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(args).map_err(|_| {
        GatewayError::invalid_param(
            &format!("messages[{msg}].tool_calls[{call}].function.arguments"),
            "Tool call arguments must be a JSON object.",
        )
    })
}

fn user_blocks(content: &Content, param: &str) -> Result<Vec<Value>, GatewayError> {
    let parts = match content {
        Content::Text(t) => {
            let mut blocks = Vec::new();
            push_text(&mut blocks, t.clone());
            return Ok(blocks);
        }
        Content::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (k, part) in parts.iter().enumerate() {
        let param = format!("{param}[{k}]");
        match part {
            ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
                push_text(&mut blocks, text.clone())
            }
            ContentPart::ImageUrl { image_url } => {
                blocks.push(image_block(&image_url.url, &param)?)
            }
            ContentPart::File { file } => {
                let data = file.file_data.as_deref().ok_or_else(|| {
                    GatewayError::invalid_param(
                        &param,
                        format!("{PROVIDER} needs files inline as `file_data`; `file_id` is not supported."),
                    )
                })?;
                let mut doc = document_block(data, &param)?;
                if let Some(name) = &file.filename {
                    doc["title"] = json!(name);
                }
                blocks.push(doc);
            }
            ContentPart::InputAudio { .. } => {
                return Err(GatewayError::invalid_param(
                    &param,
                    format!("Audio input is not supported by {PROVIDER}."),
                ))
            }
        }
    }
    Ok(blocks)
}

fn image_block(url: &str, param: &str) -> Result<Value, GatewayError> {
    if let Some((mime, data)) = parse_data_url(url) {
        // Anthropic takes exactly image/jpeg, png, gif and webp: no parameters, no `image/jpg`.
        let mime = mime
            .split(';')
            .next()
            .unwrap_or(mime)
            .trim()
            .to_ascii_lowercase();
        let mime = if mime == "image/jpg" {
            "image/jpeg".to_owned()
        } else {
            mime
        };
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(GatewayError::invalid_param(
        param,
        "Image URLs must be http(s) URLs or base64 data URLs.",
    ))
}

/// Base64 as clients write it: padded or not, standard or URL-safe, wrapped in lines.
fn decode_base64_leniently(data: &str) -> Option<Vec<u8>> {
    use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    Base64::decode_vec(&compact)
        .or_else(|_| Base64Unpadded::decode_vec(&compact))
        .or_else(|_| Base64Url::decode_vec(&compact))
        .or_else(|_| Base64UrlUnpadded::decode_vec(&compact))
        .ok()
}

fn document_block(data_url: &str, param: &str) -> Result<Value, GatewayError> {
    match parse_data_url(data_url) {
        Some(("application/pdf", data)) => Ok(
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}),
        ),
        Some((mime, data))
            if mime
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/plain")) =>
        {
            let text = decode_base64_leniently(data)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    GatewayError::invalid_param(
                        param,
                        "A `text/plain` file must be UTF-8 text in base64.",
                    )
                })?;
            Ok(
                json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}),
            )
        }
        Some((mime, _)) => Err(GatewayError::invalid_param(
            param,
            format!(
                "Files of type `{mime}` are not supported by {PROVIDER}; send PDFs or plain text."
            ),
        )),
        None => Err(GatewayError::invalid_param(
            param,
            "`file_data` must be a base64 data URL.",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

#[derive(Deserialize)]
struct MessageBody {
    id: String,
    model: String,
    /// Each block as sent: a tool call's `input` is read from its text (see [`ToolInput`]).
    #[serde(default)]
    content: Vec<Box<RawValue>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: RawUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

/// A `tool_use` block's `input`, kept as sent so the arguments reach the client in the model's
/// key order (a `RawValue` cannot sit inside the tagged [`ResponseBlock`]).
#[derive(Deserialize)]
struct ToolInput {
    #[serde(default)]
    input: Option<Box<RawValue>>,
}

/// Anthropic usage; every field is cumulative.
#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct RawUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct OutputDetails {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

impl RawUsage {
    /// Takes every field `later` reports (they are totals so far, never increments).
    fn update(&mut self, later: &RawUsage) {
        let keep = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }

    /// OpenAI usage: cache reads and writes are counted inside `prompt_tokens`.
    fn to_usage(self) -> Usage {
        let cache_read = self.cache_read_input_tokens;
        let cache_write = self.cache_creation_input_tokens;
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cache_read.unwrap_or(0))
            .saturating_add(cache_write.unwrap_or(0));
        let completion = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            cached_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: self.output_tokens_details.and_then(|d| d.thinking_tokens),
        }
    }
}

/// Translates a non-streaming Messages response.
pub fn translate_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let msg: MessageBody = serde_json::from_slice(body).map_err(|_| unreadable())?;
    let mut message = AssistantMessage::default();
    for raw in msg.content {
        let block: ResponseBlock = serde_json::from_str(raw.get()).map_err(|_| unreadable())?;
        match block {
            ResponseBlock::Text { text } => message
                .content
                .get_or_insert_with(String::new)
                .push_str(&text),
            ResponseBlock::Thinking {
                thinking,
                signature,
            } => {
                // (A thinking block whose text was omitted adds no empty `reasoning`, but its
                // signature still goes back.)
                if !thinking.is_empty() {
                    message
                        .reasoning
                        .get_or_insert_with(String::new)
                        .push_str(&thinking);
                }
                if !signature.is_empty() {
                    message.reasoning_details.push(ReasoningDetail::Text {
                        text: thinking,
                        signature,
                    });
                }
            }
            ResponseBlock::RedactedThinking { data } if !data.is_empty() => message
                .reasoning_details
                .push(ReasoningDetail::Encrypted { data }),
            ResponseBlock::RedactedThinking { .. } => {}
            ResponseBlock::ToolUse { id, name } => {
                let input: ToolInput = serde_json::from_str(raw.get()).map_err(|_| unreadable())?;
                let arguments = input
                    .input
                    .map_or_else(|| "{}".to_owned(), |i| compact_json(i.get()));
                message.tool_calls.push(ResponseToolCall {
                    id,
                    name,
                    arguments,
                })
            }
            ResponseBlock::Other => {}
        }
    }
    Ok(ChatResponse {
        id: msg.id,
        model: msg.model,
        created: 0,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: msg.stop_reason.as_deref().map(FinishReason::from_anthropic),
        }],
        usage: Some(msg.usage.to_usage()),
    })
}

fn unreadable() -> GatewayError {
    GatewayError::bad_gateway(format!(
        "{PROVIDER} returned a response the gateway could not read."
    ))
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Maps an Anthropic error response to the gateway error the client sees.
pub fn translate_error(status: u16, retry_after: Option<String>, body: &[u8]) -> GatewayError {
    let (kind, message) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(e) => (e.error.kind, e.error.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ),
    };
    let text = if message.is_empty() {
        format!("{PROVIDER} returned HTTP {status}.")
    } else {
        format!("{PROVIDER}: {message}")
    };
    let lower = message.to_ascii_lowercase();
    let err = if status == 529 || kind == "overloaded_error" {
        GatewayError::upstream(503, text).with_code("overloaded")
    } else if status == 429 || kind == "rate_limit_error" {
        GatewayError::upstream(429, text).with_code("rate_limit_exceeded")
    } else if is_context_overflow(&lower) {
        GatewayError::upstream(400, text)
            .with_code("context_length_exceeded")
            .with_param("messages")
    } else if status == 401 || kind == "authentication_error" {
        GatewayError::credential_refused(text)
    } else {
        GatewayError::upstream(status, text)
    };
    err.with_retry_after(retry_after)
}

fn is_context_overflow(lower_message: &str) -> bool {
    lower_message.contains("prompt is too long")
        || lower_message.contains("exceed context limit")
        || lower_message.contains("context window")
        || lower_message.contains("context length")
}

/// The HTTP status Anthropic uses for an error type, for errors that arrive inside a stream.
fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<RawUsage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Ignored,
}

#[derive(Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: RawUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call with its OpenAI index; `has_args` once any argument text was sent.
    Tool {
        index: u32,
        has_args: bool,
    },
    Other,
}

/// The most content blocks one streamed answer may start.
const MAX_BLOCKS: usize = 10_000;

/// Turns Anthropic stream events into [`StreamPart`]s.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    /// The kind of every block started so far, at Anthropic's content index (0, 1, 2, …).
    blocks: Vec<Option<BlockKind>>,
    tool_count: u32,
    /// The `reasoning_details` index of the thinking block under way (its text pieces and its
    /// signature go out under it).
    thinking_index: u32,
    /// How many `reasoning_details` indexes (thinking and redacted blocks) have been used.
    detail_count: u32,
    usage: RawUsage,
    stop_reason: Option<String>,
    /// `message_stop` or an error arrived: the stream is over.
    ended: bool,
}

impl StreamTranslator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Translates one SSE event.
    pub fn on_event(&mut self, ev: &SseEvent, out: &mut Vec<StreamPart>) {
        if self.ended {
            return;
        }
        let event: Event = match serde_json::from_str(&ev.data) {
            Ok(e) => e,
            Err(_) => return self.fail(unreadable(), out),
        };
        match event {
            Event::MessageStart { message } => {
                self.usage.update(&message.usage);
                out.push(StreamPart::Start {
                    id: message.id,
                    model: message.model,
                });
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => self.start_block(index, content_block, out),
            Event::ContentBlockDelta { index, delta } => self.delta(index, delta, out),
            Event::ContentBlockStop { index } => self.stop_block(index, out),
            Event::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = usage {
                    self.usage.update(&u);
                }
            }
            Event::MessageStop => {
                self.ended = true;
                out.push(StreamPart::Usage(self.usage.to_usage()));
                let reason = self
                    .stop_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, FinishReason::from_anthropic);
                out.push(StreamPart::Finish(reason));
            }
            Event::Error { error } => {
                let status = status_for_error_type(&error.kind);
                let body = json!({"type": "error", "error": {"type": error.kind, "message": error.message}});
                self.fail(
                    translate_error(status, None, body.to_string().as_bytes()),
                    out,
                )
            }
            Event::Ignored => {}
        }
    }

    /// Whether `message_stop` or an error has arrived: nothing more will be translated.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Ends the stream; a stream cut before `message_stop` reports an error.
    pub fn finish(&mut self, out: &mut Vec<StreamPart>) {
        if !self.ended {
            let e = GatewayError::bad_gateway(format!(
                "The {PROVIDER} stream ended before message_stop."
            ));
            self.fail(e, out);
        }
    }

    fn fail(&mut self, e: GatewayError, out: &mut Vec<StreamPart>) {
        self.ended = true;
        out.push(StreamPart::Error(e));
    }

    fn kind_of(&self, index: u64) -> Option<BlockKind> {
        *self.blocks.get(usize::try_from(index).ok()?)?
    }

    /// (Only for an index `start_block` has made room for.)
    fn set_kind(&mut self, index: u64, kind: BlockKind) {
        if let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.blocks.get_mut(i))
        {
            *slot = Some(kind);
        }
    }

    fn start_block(&mut self, index: u64, block: StartBlock, out: &mut Vec<StreamPart>) {
        let Some(at) = usize::try_from(index).ok().filter(|i| *i < MAX_BLOCKS) else {
            // Far beyond any answer (a provider gone wrong): each block is remembered.
            let e = GatewayError::bad_gateway(format!(
                "{PROVIDER} started a content block at index {index}, beyond {MAX_BLOCKS}."
            ));
            return self.fail(e, out);
        };
        if self.blocks.len() <= at {
            self.blocks.resize(at + 1, None);
        }
        let kind = match block {
            StartBlock::Text { text } => {
                push_nonempty(out, text, StreamPart::TextDelta);
                BlockKind::Text
            }
            StartBlock::Thinking { thinking } => {
                self.thinking_index = self.detail_count;
                self.detail_count += 1;
                self.push_thinking(thinking, out);
                BlockKind::Thinking
            }
            StartBlock::RedactedThinking { data } => {
                if !data.is_empty() {
                    out.push(StreamPart::ReasoningDetail {
                        index: self.detail_count,
                        detail: ReasoningDetail::Encrypted { data },
                    });
                    self.detail_count += 1;
                }
                BlockKind::Other
            }
            StartBlock::Other => BlockKind::Other,
            StartBlock::ToolUse { id, name, input } => {
                let tool_index = self.tool_count;
                self.tool_count += 1;
                out.push(StreamPart::ToolCallStart {
                    index: tool_index,
                    id,
                    name,
                });
                let has_args = input.as_object().is_some_and(|o| !o.is_empty());
                if has_args {
                    out.push(StreamPart::ToolCallArgs {
                        index: tool_index,
                        delta: input.to_string(),
                    });
                }
                BlockKind::Tool {
                    index: tool_index,
                    has_args,
                }
            }
        };
        self.set_kind(index, kind);
    }

    fn delta(&mut self, index: u64, delta: BlockDelta, out: &mut Vec<StreamPart>) {
        match (self.kind_of(index), delta) {
            (Some(BlockKind::Text), BlockDelta::TextDelta { text }) => {
                push_nonempty(out, text, StreamPart::TextDelta)
            }
            (Some(BlockKind::Thinking), BlockDelta::ThinkingDelta { thinking }) => {
                self.push_thinking(thinking, out)
            }
            // The block's signature comes last, under the index its text went out with.
            (Some(BlockKind::Thinking), BlockDelta::SignatureDelta { signature })
                if !signature.is_empty() =>
            {
                out.push(StreamPart::ReasoningDetail {
                    index: self.thinking_index,
                    detail: ReasoningDetail::Text {
                        text: String::new(),
                        signature,
                    },
                });
            }
            (
                Some(BlockKind::Tool { index: tool, .. }),
                BlockDelta::InputJsonDelta { partial_json },
            ) if !partial_json.is_empty() => {
                out.push(StreamPart::ToolCallArgs {
                    index: tool,
                    delta: partial_json,
                });
                self.set_kind(
                    index,
                    BlockKind::Tool {
                        index: tool,
                        has_args: true,
                    },
                );
            }
            // citations, empty JSON deltas, deltas of unknown blocks
            _ => {}
        }
    }

    fn push_thinking(&self, text: String, out: &mut Vec<StreamPart>) {
        if !text.is_empty() {
            out.push(StreamPart::SignedReasoningDelta {
                index: self.thinking_index,
                text,
            });
        }
    }

    fn stop_block(&mut self, index: u64, out: &mut Vec<StreamPart>) {
        if let Some(BlockKind::Tool {
            index: tool,
            has_args: false,
        }) = self.kind_of(index)
        {
            // A call without arguments: OpenAI clients expect a JSON object.
            out.push(StreamPart::ToolCallArgs {
                index: tool,
                delta: "{}".to_owned(),
            });
            self.set_kind(
                index,
                BlockKind::Tool {
                    index: tool,
                    has_args: true,
                },
            );
        }
    }
}

fn push_nonempty(out: &mut Vec<StreamPart>, text: String, make: fn(String) -> StreamPart) {
    if !text.is_empty() {
        out.push(make(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::ChatRequest;
    use crate::formats::openai::testing::{encode_all, Assembled};
    use serde_json::json;

    fn request(v: Value) -> ChatRequest {
        ChatRequest::from_json(v.to_string().as_bytes()).unwrap()
    }

    fn body(v: Value) -> Value {
        serde_json::from_slice(&build_request(&request(v), "claude-sonnet-4-5").unwrap()).unwrap()
    }

    fn refused(v: Value) -> GatewayError {
        build_request(&request(v), "claude-sonnet-4-5").unwrap_err()
    }

    #[test]
    fn safety_identifier_stands_in_for_user_and_parse_errors_name_the_field() {
        let b = body(json!({"model": "m", "messages": [], "safety_identifier": "user-42"}));
        assert_eq!(b["metadata"]["user_id"], "user-42");
        let b = body(
            json!({"model": "m", "messages": [], "user": "u1", "safety_identifier": "user-42"}),
        );
        assert_eq!(b["metadata"]["user_id"], "u1", "user wins");
        let b = body(json!({"model": "m", "messages": [], "reasoning_effort": "xhigh"}));
        assert!(b.get("thinking").is_some(), "xhigh is taken as high: {b}");
        let b = body(
            json!({"model": "m", "messages": [], "stream": true, "stream_options": {"include_usage": null}}),
        );
        assert_eq!(b["stream"], true);
        // A value the request types cannot take: a 400 naming where.
        for (v, param) in [
            (
                json!({"model": "m", "messages": [{"role": "function", "content": "x", "name": "f"}]}),
                "messages[0].role",
            ),
            (
                json!({"model": "m", "messages": [], "tools": [{"type": "custom", "custom": {"name": "x"}}]}),
                "tools[0]",
            ),
            (
                json!({"model": "m", "messages": [], "reasoning_effort": "extreme"}),
                "reasoning_effort",
            ),
        ] {
            let e = ChatRequest::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{}",
                e.message
            );
        }
    }

    /// Replays a recorded stream at every byte split, then through the translator and encoder.
    #[test]
    fn a_stream_starting_endless_blocks_is_failed_in_linear_time() {
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for i in 0..=MAX_BLOCKS as u64 {
            let data = format!(
                r#"{{"type":"content_block_start","index":{i},"content_block":{{"type":"text","text":""}}}}"#
            );
            t.on_event(&SseEvent { event: None, data }, &mut parts);
            // a delta for the first block each time: found at once, not by a scan
            let data = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#;
            t.on_event(
                &SseEvent {
                    event: None,
                    data: data.into(),
                },
                &mut parts,
            );
        }
        assert!(
            matches!(parts.last(), Some(StreamPart::Error(e)) if e.message.contains("beyond")),
            "{:?}",
            parts.last()
        );
    }

    fn replay(name: &str) -> (Vec<StreamPart>, Assembled) {
        let path = format!(
            "{}/tests/fixtures/anthropic/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        let events = crate::sse::tests::assert_split_invariant(&bytes);
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for ev in &events {
            t.on_event(ev, &mut parts);
        }
        t.finish(&mut parts);
        let assembled = encode_all(parts.clone());
        (parts, assembled)
    }

    fn usage(parts: &[StreamPart]) -> Usage {
        parts
            .iter()
            .rev()
            .find_map(|p| match p {
                StreamPart::Usage(u) => Some(*u),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn builds_a_full_request() {
        let b = body(json!({
            "model": "anthropic/claude", "stream": true, "temperature": 0.5, "top_p": 1,
            "max_tokens": 300, "stop": ["END"], "user": "u-1", "parallel_tool_calls": false,
            "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "20C"},
                {"role": "user", "content": "And tomorrow?"}
            ]
        }));
        assert_eq!(
            b,
            json!({
                "model": "claude-sonnet-4-5",
                "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "20C"},
                        {"type": "text", "text": "And tomorrow?"}]}
                ],
                "max_tokens": 300, "temperature": 0.5, "stop_sequences": ["END"],
                "tools": [{"name": "get_weather", "description": "Weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                "metadata": {"user_id": "u-1"},
                "stream": true
            })
        );
    }

    #[test]
    fn sampling_parameters_go_as_far_as_each_claude_model_takes_them() {
        let sent = |model: &str, t: Value, p: Value| -> Result<(Value, Value), GatewayError> {
            let mut v = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            v["temperature"] = t;
            v["top_p"] = p;
            let b: Value = serde_json::from_slice(&build_request(&request(v), model)?).unwrap();
            Ok((b["temperature"].clone(), b["top_p"].clone()))
        };
        let null = Value::Null;
        for model in [
            "claude-3-7-sonnet-latest",
            "claude-sonnet-4-20250514",
            "claude-opus-4@20250514",
            "some-proxy-id",
        ] {
            assert_eq!(
                sent(model, json!(0.5), json!(0.9)).unwrap(),
                (json!(0.5), json!(0.9)),
                "{model}"
            );
        }
        for model in [
            "claude-opus-4-1",
            "claude-sonnet-4-5",
            "claude-haiku-4-5-20251001",
            "claude-sonnet-4-6",
            "claude-opus-4-6@default",
        ] {
            let e = sent(model, json!(0.5), json!(0.9)).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("top_p")),
                "{model}"
            );
            assert!(e.message.contains("not both"), "{}", e.message);
            // A default restated asks for nothing: the other one goes.
            assert_eq!(
                sent(model, json!(0.5), json!(1)).unwrap(),
                (json!(0.5), null.clone())
            );
            assert_eq!(
                sent(model, json!(1), json!(0.9)).unwrap(),
                (null.clone(), json!(0.9))
            );
            assert_eq!(
                sent(model, json!(0.2), null.clone()).unwrap(),
                (json!(0.2), null.clone())
            );
            assert_eq!(
                sent(model, null.clone(), json!(0.3)).unwrap(),
                (null.clone(), json!(0.3))
            );
        }
        for model in [
            "claude-opus-4-7",
            "claude-opus-4-7@20260416",
            "claude-sonnet-5",
            "claude-haiku-5-5",
        ] {
            for (t, p, param) in [
                (json!(0.5), null.clone(), "temperature"),
                (json!(0), json!(1), "temperature"),
                (null.clone(), json!(0.9), "top_p"),
                (json!(1), json!(0.9), "top_p"),
            ] {
                let e = sent(model, t, p).unwrap_err();
                assert_eq!(
                    (e.status, e.param.as_deref()),
                    (400, Some(param)),
                    "{model}"
                );
                assert!(e.message.contains("leave it out"), "{}", e.message);
            }
            assert_eq!(
                sent(model, json!(1), json!(1)).unwrap(),
                (null.clone(), null.clone()),
                "{model}: the defaults restated go unsent"
            );
        }
    }

    #[test]
    fn stop_sequences_of_whitespace_are_refused_naming_stop() {
        for stop in [json!("\n"), json!(["END", ""]), json!(["\n\n", " "])] {
            let e = refused(json!({"model": "m", "messages": [], "stop": stop}));
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some("stop")),
                "{stop}"
            );
        }
        let b = body(json!({"model": "m", "messages": [], "stop": ["\nEND", " x "]}));
        assert_eq!(b["stop_sequences"], json!(["\nEND", " x "]));
    }

    #[test]
    fn images_and_pdfs_become_native_blocks() {
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
                {"type": "file", "file": {"file_data": "data:text/plain;charset=utf-8;base64,SGVsbG8sIOKCrA==", "filename": "n.txt"}},
                {"type": "text", "text": "Describe."}
            ]}]}),
        );
        assert_eq!(
            b["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}, "title": "a.pdf"},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Hello, €"}, "title": "n.txt"},
                {"type": "text", "text": "Describe."}
            ])
        );
        // Unpadded, wrapped, URL-safe, `;BASE64`: all read.
        for (url, want) in [
            ("data:text/plain;base64,SGk", "Hi"),
            ("data:text/plain;base64,SGVs\nbG8=", "Hello"),
            ("data:text/plain;BASE64,Pz8-", "??>"),
        ] {
            let b = body(
                json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "file", "file": {"file_data": url}}]}]}),
            );
            assert_eq!(
                b["messages"][0]["content"][0]["source"]["data"], want,
                "{url}"
            );
        }
        for bad in ["data:text/plain;base64,//79", "data:text/plain;base64,%%%"] {
            let e = build_request(
                &request(
                    json!({"model": "m", "messages": [{"role": "user", "content": [
                    {"type": "file", "file": {"file_data": bad}}]}]}),
                ),
                "m",
            )
            .unwrap_err();
            assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"), "{bad}");
        }
        assert_eq!(
            b["max_tokens"], DEFAULT_MAX_TOKENS,
            "a default max_tokens is always sent"
        );
    }

    #[test]
    fn tool_choice_modes_map_to_anthropics() {
        let choice = |c: Value| {
            body(json!({"model": "m", "messages": [], "tool_choice": c,
            "tools": [{"type": "function", "function": {"name": "f"}}]}))["tool_choice"]
                .clone()
        };
        assert_eq!(choice(json!("auto")), json!({"type": "auto"}));
        assert_eq!(choice(json!("none")), json!({"type": "none"}));
        assert_eq!(
            choice(json!({"type": "function", "function": {"name": "f"}})),
            json!({"type": "tool", "name": "f"})
        );
        let b = body(
            json!({"model": "m", "messages": [], "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "f"}}]}),
        );
        assert_eq!(
            b["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            b["tools"][0]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn a_forced_tool_call_goes_without_thinking() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for choice in [
            json!("required"),
            json!({"type": "function", "function": {"name": "f"}}),
        ] {
            for model in ["claude-sonnet-4-5", "claude-opus-4-7"] {
                let b: Value = serde_json::from_slice(
                    &build_request(
                        &request(
                            json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                            "tools": tools, "tool_choice": choice, "reasoning_effort": "high"}),
                        ),
                        model,
                    )
                    .unwrap(),
                )
                .unwrap();
                assert!(b.get("thinking").is_none(), "{model} {choice}: {b}");
                assert!(b["tool_choice"]["type"] == "any" || b["tool_choice"]["type"] == "tool");
                assert_eq!(
                    b["max_tokens"], DEFAULT_MAX_TOKENS,
                    "no room kept for thinking"
                );
                if model == "claude-opus-4-7" {
                    assert_eq!(b["output_config"]["effort"], "high", "the effort stays");
                }
            }
        }
        // A limit too small for a budget that is not sent is no reason to refuse.
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
            "tools": tools, "tool_choice": "required", "reasoning_effort": "low", "max_tokens": 1000}),
        );
        assert_eq!(b["max_tokens"], 1000);
        // `auto` keeps it.
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
            "tools": tools, "tool_choice": "auto", "reasoning_effort": "high"}),
        );
        assert_eq!(b["thinking"]["type"], "enabled");
    }

    #[test]
    fn thinking_given_back_opens_its_turn_and_keeps_thinking_on_after_tool_results() {
        let call = json!({"role": "assistant", "content": null,
            "reasoning": "I should call f.",
            "reasoning_details": [
                {"type": "reasoning.text", "text": "I should call f.", "signature": "sig-1", "format": "anthropic-claude-v1", "index": 0},
                {"type": "reasoning.encrypted", "data": "enc-2", "format": "anthropic-claude-v1", "index": 1},
                {"type": "reasoning.text", "text": "unsigned", "format": "anthropic-claude-v1"},
                {"type": "reasoning.encrypted", "data": "gemini", "format": "google-gemini-v1"},
                {"type": "reasoning.summary", "summary": "s"}
            ],
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        let result = json!({"role": "tool", "tool_call_id": "toolu_1", "content": "42"});
        let user = json!({"role": "user", "content": "What is f?"});
        let messages = json!([user, call, result]);
        for model in ["claude-sonnet-4-5", "claude-opus-4-7"] {
            let b: Value = serde_json::from_slice(
                &build_request(
                    &request(
                        json!({"model": "m", "messages": messages, "reasoning_effort": "high"}),
                    ),
                    model,
                )
                .unwrap(),
            )
            .unwrap();
            assert!(
                b.get("thinking").is_some(),
                "{model}: thinking stays on: {b}"
            );
            assert_eq!(
                b["messages"][1]["content"],
                json!([
                    {"type": "thinking", "thinking": "I should call f.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "enc-2"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                ]),
                "{model}"
            );
        }
        // A request that does not think sends no thinking back.
        let b = body(json!({"model": "m", "messages": messages}));
        assert!(b.get("thinking").is_none());
        assert_eq!(
            b["messages"][1]["content"],
            json!([{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}])
        );
    }

    #[test]
    fn thinking_given_back_belongs_to_the_current_turn_and_opens_it() {
        let details = json!([{"type": "reasoning.text", "text": "plan", "signature": "sig-1", "format": "anthropic-claude-v1", "index": 0}]);
        let call = |id: &str| json!([{"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "1"});
        let thinking = json!({"type": "thinking", "thinking": "plan", "signature": "sig-1"});
        // A second tool round: the turn's first message carries the thinking, the later one
        // none (Claude before 4.6 thinks once per turn); thinking stays on.
        let b = body(
            json!({"model": "m", "reasoning_effort": "high", "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": null, "reasoning_details": details, "tool_calls": call("t1")},
                result("t1"),
                {"role": "assistant", "content": null, "tool_calls": call("t2")},
                result("t2")
            ]}),
        );
        assert_eq!(b["thinking"]["type"], "enabled", "{b}");
        assert_eq!(b["messages"][1]["content"][0], thinking);
        // An earlier turn's thinking is not given back.
        let b = body(
            json!({"model": "m", "reasoning_effort": "high", "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": "Done.", "reasoning_details": details},
                {"role": "user", "content": "Again"}
            ]}),
        );
        assert_eq!(
            b["messages"][1]["content"],
            json!([{"type": "text", "text": "Done."}])
        );
        // Assistant messages merged into one turn: its thinking opens it.
        let b = body(
            json!({"model": "m", "reasoning_effort": "high", "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": "Let me check. "},
                {"role": "assistant", "content": null, "reasoning_details": details, "tool_calls": call("t1")},
                result("t1")
            ]}),
        );
        assert_eq!(b["messages"][1]["content"][0], thinking, "{b}");
        assert_eq!(b["messages"][1]["content"][1]["type"], "text");
        assert_eq!(b["messages"][1]["content"][2]["type"], "tool_use");
        assert_eq!(b["thinking"]["type"], "enabled");
        // What the gateway cannot use is skipped, never refused.
        for odd in [
            json!("x"),
            json!([1, {"type": 3}, {"no": "type"}]),
            json!({}),
        ] {
            let b = body(
                json!({"model": "m", "reasoning_effort": "high", "messages": [
                    {"role": "user", "content": "Go"},
                    {"role": "assistant", "content": "Hi", "reasoning_details": odd}
                ]}),
            );
            assert_eq!(
                b["messages"][1]["content"],
                json!([{"type": "text", "text": "Hi"}])
            );
        }
        // Among them, a usable item still counts.
        let b = body(
            json!({"model": "m", "reasoning_effort": "high", "messages": [
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": "Hi", "reasoning_details": [1, {"type": 3}, details[0]]}
            ]}),
        );
        assert_eq!(b["messages"][1]["content"][0], thinking);
    }

    #[test]
    fn budget_thinking_is_left_out_of_a_turn_that_continues_after_tool_results() {
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        let result = json!({"role": "tool", "tool_call_id": "toolu_1", "content": "42"});
        let user = json!({"role": "user", "content": "What is f?"});
        let b = body(
            json!({"model": "m", "messages": [user, call, result], "reasoning_effort": "high"}),
        );
        assert!(b.get("thinking").is_none(), "{b}");
        assert_eq!(b["messages"][2]["content"][0]["type"], "tool_result");
        // A new question after the tool loop thinks again.
        let next = json!({"role": "assistant", "content": "It is 42."});
        let again = json!({"role": "user", "content": "And g?"});
        let b = body(
            json!({"model": "m", "messages": [user, call, result, next, again], "reasoning_effort": "high"}),
        );
        assert_eq!(b["thinking"]["type"], "enabled", "{b}");
    }

    #[test]
    fn reasoning_becomes_a_thinking_budget_inside_max_tokens() {
        let b = body(json!({"model": "m", "messages": [], "reasoning_effort": "high"}));
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 16384})
        );
        assert_eq!(b["max_tokens"], 16384 + DEFAULT_MAX_TOKENS);
        let b = body(
            json!({"model": "m", "messages": [], "reasoning_effort": "high", "max_completion_tokens": 10000}),
        );
        assert_eq!(
            b["thinking"]["budget_tokens"], 5000,
            "an effort's budget is capped at half the limit"
        );
        assert_eq!(b["max_tokens"], 10000);
        let b = body(json!({"model": "m", "messages": [], "reasoning": {"max_tokens": 3000}}));
        assert_eq!(b["thinking"]["budget_tokens"], 3000);
        let b = body(
            json!({"model": "m", "messages": [], "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        );
        assert_eq!(b["thinking"]["budget_tokens"], 2048);
        assert!(
            body(json!({"model": "m", "messages": [], "reasoning_effort": "none"}))
                .get("thinking")
                .is_none()
        );
        let e = refused(
            json!({"model": "m", "messages": [], "reasoning": {"max_tokens": 4000}, "max_tokens": 4000}),
        );
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = refused(json!({"model": "m", "messages": [], "reasoning": {"max_tokens": 100}}));
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("reasoning.max_tokens"));
        let e = refused(
            json!({"model": "m", "messages": [], "thinking": {"type": "enabled", "budget_tokens": 1000}}),
        );
        assert_eq!(e.param.as_deref(), Some("thinking.budget_tokens"));
        // An effort with little room gets Anthropic's minimum budget, not a refusal.
        let b = body(
            json!({"model": "m", "messages": [], "reasoning_effort": "low", "max_completion_tokens": 1500}),
        );
        assert_eq!(b["thinking"]["budget_tokens"], MIN_THINKING_BUDGET);
        assert_eq!(b["max_tokens"], 1500);
        // No room at all: the length limit the client sent is named.
        let e = refused(
            json!({"model": "m", "messages": [], "reasoning_effort": "low", "max_completion_tokens": 1024}),
        );
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
        assert!(e.message.contains("1024"), "{}", e.message);
        // A budget at the top of the range does not wrap around (nor panic): a clear 400.
        let e =
            refused(json!({"model": "m", "messages": [], "reasoning": {"max_tokens": u64::MAX}}));
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        assert!(e.message.contains(&u64::MAX.to_string()), "{}", e.message);
    }

    /// What Anthropic refuses that OpenAI takes (its 400s, quoted in anthropics/claude-code#23440,
    /// BerriAI/litellm#10106 and #16123, and vercel/ai's prefill trimming): whitespace-only
    /// text, a prefill ending in whitespace, an email as `user`, `image/jpg`.
    #[test]
    fn requests_openai_takes_and_anthropic_would_refuse_are_adjusted() {
        let b = body(json!({"model": "m", "messages": [
            {"role": "system", "content": "  "},
            {"role": "user", "content": [{"type": "text", "text": " \n"}, {"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "\n\n"},
            {"role": "user", "content": "Answer with a name."},
            {"role": "assistant", "content": "The name is "}
        ], "user": "alice@example.com"}));
        assert!(
            b.get("system").is_none(),
            "whitespace-only system text is left out"
        );
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Answer with a name."}]},
                {"role": "assistant", "content": [{"type": "text", "text": "The name is"}]}
            ])
        );
        let user_id = b["metadata"]["user_id"].as_str().unwrap();
        assert!(!user_id.contains('@') && user_id.len() == 64, "{user_id}");
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "team-7"}),
        );
        assert_eq!(
            b["metadata"]["user_id"], "team-7",
            "an opaque id goes as it is"
        );

        // Only a system message: it becomes the user turn.
        let b = body(json!({"model": "m", "messages": [{"role": "system", "content": "Say hi"}]}));
        assert!(b.get("system").is_none());
        assert_eq!(
            b["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}])
        );

        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "data:Image/PNG;charset=utf-8;base64,AAAA"}}
            ]}]}),
        );
        let blocks = &b["messages"][0]["content"];
        assert_eq!(blocks[0]["source"]["media_type"], "image/jpeg");
        assert_eq!(blocks[1]["source"]["media_type"], "image/png");
    }

    #[test]
    fn claude_4_6_and_later_think_adaptively_with_an_effort() {
        for adaptive in [
            "claude-sonnet-4-6",
            "claude-opus-4-7-20260416",
            "claude-opus-4-7@20260416",
            "claude-opus-4-8",
            "claude-opus-5",
            "claude-sonnet-5-5",
            "claude-haiku-5-5",
            "claude-fable-5-1",
            "claude-mythos-5",
            "claude-opus-6",
        ] {
            assert!(adaptive_thinking(adaptive), "{adaptive}");
        }
        for budget in [
            "claude-3-5-sonnet-20240620",
            "claude-3-7-sonnet-latest",
            "claude-3-sonnet-20240229",
            "claude-sonnet-4-20250514",
            "claude-opus-4@20250514",
            "claude-opus-4-1",
            "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5",
            "claude-opus-4-5@20251101",
            "m",
        ] {
            assert!(!adaptive_thinking(budget), "{budget}");
        }
        let build = |v: Value| -> Value {
            serde_json::from_slice(&build_request(&request(v), "claude-opus-4-7").unwrap()).unwrap()
        };
        let b = build(json!({"model": "m", "messages": [], "reasoning_effort": "high"}));
        assert_eq!(
            b["thinking"],
            json!({"type": "adaptive", "display": "summarized"})
        );
        assert_eq!(b["output_config"], json!({"effort": "high"}));
        assert_eq!(b["max_tokens"], 16384 + DEFAULT_MAX_TOKENS);
        let b = build(
            json!({"model": "m", "messages": [], "reasoning_effort": "minimal", "max_tokens": 900}),
        );
        assert_eq!(b["output_config"]["effort"], "low");
        assert_eq!(b["max_tokens"], 900, "the client's limit stands");
        // A budget picks the level that covers it (adaptive models take no budget).
        let b = build(
            json!({"model": "m", "messages": [], "thinking": {"type": "enabled", "budget_tokens": 5000}}),
        );
        assert_eq!(
            b["thinking"],
            json!({"type": "adaptive", "display": "summarized"})
        );
        assert_eq!(b["output_config"]["effort"], "medium");
        // `xhigh` where the model has it (Opus 4.7 on, Claude 5 on), else `high`.
        for (model, want) in [
            ("claude-opus-4-7", "xhigh"),
            ("claude-opus-4-8@20260601", "xhigh"),
            ("claude-sonnet-5", "xhigh"),
            ("claude-opus-4-6", "high"),
            ("claude-sonnet-4-6", "high"),
        ] {
            let b: Value = serde_json::from_slice(
                &build_request(
                    &request(json!({"model": "m", "messages": [], "reasoning_effort": "xhigh"})),
                    model,
                )
                .unwrap(),
            )
            .unwrap();
            assert_eq!(b["output_config"]["effort"], want, "{model}");
        }
        // Off, or nothing asked: no thinking field at all (Opus 4.7 refuses `disabled`).
        for off in [json!("none"), Value::Null] {
            let b = build(json!({"model": "m", "messages": [], "reasoning_effort": off}));
            assert!(
                b.get("thinking").is_none() && b.get("output_config").is_none(),
                "{b}"
            );
            assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        }
        // Effort and structured output share output_config.
        let schema = json!({"type": "object"});
        let b = build(
            json!({"model": "m", "messages": [], "reasoning_effort": "low", "response_format":
            {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}),
        );
        assert_eq!(
            b["output_config"],
            json!({"effort": "low", "format": {"type": "json_schema", "schema": schema}})
        );
    }

    #[test]
    fn json_schema_maps_to_structured_outputs() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        let b = body(json!({"model": "m", "messages": [], "response_format":
            {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}}));
        assert_eq!(
            b["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
    }

    #[test]
    fn refuses_what_anthropic_cannot_honour() {
        for (field, v) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("logit_bias", json!({"50256": -100})),
            ("seed", json!(7)),
            ("presence_penalty", json!(0.5)),
            ("frequency_penalty", json!(0.5)),
            ("response_format", json!({"type": "json_object"})),
            ("modalities", json!(["text", "audio"])),
        ] {
            let mut req = json!({"model": "m", "messages": []});
            req[field] = v;
            let e = refused(req);
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(field)),
                "{field}"
            );
            assert!(
                e.message.contains("not supported by Anthropic"),
                "{}",
                e.message
            );
        }
        let e = refused(json!({"model": "m", "messages": [], "temperature": 1.5}));
        assert_eq!(e.param.as_deref(), Some("temperature"));
        let e = refused(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]}),
        );
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
        let e = refused(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
        );
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        // accepted no-ops: n = 1, zero penalties, logprobs false
        body(
            json!({"model": "m", "messages": [], "n": 1, "presence_penalty": 0, "logprobs": false}),
        );
    }

    #[test]
    fn endpoint_and_headers() {
        assert_eq!(
            endpoint("https://api.anthropic.com/", "m", true),
            "https://api.anthropic.com/v1/messages"
        );
        let h = auth_headers("sk-ant");
        assert!(h.contains(&("x-api-key", "sk-ant".to_owned())));
        assert!(h.contains(&("anthropic-version", "2023-06-01".to_owned())));
        assert!(h.contains(&("content-type", "application/json".to_owned())));
    }

    #[test]
    fn translates_a_thinking_and_tool_use_response() {
        let body = std::fs::read(format!(
            "{}/tests/fixtures/anthropic/thinking_then_tool_use.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let r = translate_response(&body).unwrap();
        assert_eq!(r.id, "msg_011CfWBu94HWxZXjXK6ZhEXM");
        let c = &r.choices[0];
        assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(c.message.content, None);
        assert_eq!(
            c.message.reasoning.as_deref(),
            Some("The user wants me to call checkSandboxErrors immediately.")
        );
        match c.message.reasoning_details.as_slice() {
            [ReasoningDetail::Text { text, signature }] => {
                assert_eq!(
                    text,
                    "The user wants me to call checkSandboxErrors immediately."
                );
                assert!(signature.starts_with("Eq4CCpIBCBIYAipAM"), "{signature}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.message.tool_calls,
            vec![ResponseToolCall {
                id: "toolu_017R7ACrx7NF7sLDDtvdQ1u9".into(),
                name: "checkSandboxErrors".into(),
                arguments: "{}".into()
            }]
        );
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (599, 59, 658)
        );
        assert_eq!(
            (u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens),
            (Some(0), Some(0), Some(18))
        );
    }

    /// Constructed: tool inputs whose keys are not in alphabetical order reach the client in
    /// the model's order, compact.
    #[test]
    fn tool_use_arguments_keep_the_models_key_order() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c",
            "content":[
              {"type":"text","text":"Checking."},
              {"type":"tool_use","id":"toolu_1","name":"get_weather",
               "input": {"unit": "celsius", "city": "New York", "nested": {"z": [1, 2], "a": "x \" y"}}},
              {"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}
            ],
            "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":7}}"#;
        let r = translate_response(body).unwrap();
        let m = &r.choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Checking."));
        assert_eq!(
            m.tool_calls[0].arguments,
            r#"{"unit":"celsius","city":"New York","nested":{"z":[1,2],"a":"x \" y"}}"#
        );
        assert_eq!(m.tool_calls[1].arguments, "{}");
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn thinking_omitted_by_the_model_adds_no_empty_reasoning() {
        // Opus 4.7+ without `display: "summarized"`: the block comes with its signature only.
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c",
            "content":[{"type":"thinking","thinking":"","signature":"EqQB"},{"type":"redacted_thinking","data":"EmwK"},{"type":"text","text":"Four."}],
            "stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":7}}"#;
        let m = &translate_response(body).unwrap().choices[0].message;
        assert_eq!(m.content.as_deref(), Some("Four."));
        assert_eq!(m.reasoning, None);
        // Both still go back to the client, to be given back.
        assert_eq!(
            m.reasoning_details,
            vec![
                ReasoningDetail::Text {
                    text: String::new(),
                    signature: "EqQB".into()
                },
                ReasoningDetail::Encrypted {
                    data: "EmwK".into()
                }
            ]
        );
        // Streamed: the redacted block as it starts, as `delta.reasoning_details`.
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for data in [
            r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":5}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwK"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
        ] {
            t.on_event(
                &SseEvent {
                    event: None,
                    data: data.into(),
                },
                &mut parts,
            );
        }
        assert!(parts.contains(&StreamPart::ReasoningDetail {
            index: 0,
            detail: ReasoningDetail::Encrypted {
                data: "EmwK".into()
            }
        }));
        let mut enc = crate::formats::openai::ChunkEncoder::new("gen_1", "anthropic/c", 1, false);
        let mut out = Vec::new();
        for p in parts {
            enc.encode(p, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#""delta":{"reasoning_details":[{"type":"reasoning.encrypted","data":"EmwK","format":"anthropic-claude-v1","index":0}]}"#),
            "{text}"
        );
    }

    #[test]
    fn translates_a_text_response_and_counts_cache_inside_prompt() {
        let body = std::fs::read(format!(
            "{}/tests/fixtures/anthropic/text.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let r = translate_response(&body).unwrap();
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Hello! I'm doing well, thanks for asking. How are you doing today? Is there anything I can help you with?")
        );
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        let cached = br#"{"id":"m","model":"c","content":[],"stop_reason":"end_turn",
            "usage":{"input_tokens":10,"cache_read_input_tokens":100,"cache_creation_input_tokens":20,"output_tokens":5}}"#;
        let u = translate_response(cached).unwrap().usage.unwrap();
        assert_eq!(
            (
                u.prompt_tokens,
                u.cached_tokens,
                u.cache_write_tokens,
                u.total_tokens
            ),
            (130, Some(100), Some(20), 135)
        );
        assert_eq!(translate_response(b"<html>").unwrap_err().status, 502);
    }

    #[test]
    fn maps_errors_like_openai_would_report_them() {
        let overloaded =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = translate_error(529, None, overloaded);
        assert_eq!(
            (e.status, e.message.as_str()),
            (503, "Anthropic: Overloaded")
        );
        let limited = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        let e = translate_error(429, Some("17".into()), limited);
        assert_eq!(
            (e.status, e.retry_after.as_deref(), e.error_type()),
            (429, Some("17"), "rate_limit_error")
        );
        let long = br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#;
        let e = translate_error(400, None, long);
        assert_eq!(
            (e.status, e.code.as_deref()),
            (400, Some("context_length_exceeded"))
        );
        assert_eq!(
            e.message,
            "Anthropic: prompt is too long: 210000 tokens > 200000 maximum"
        );
        // Input plus max_tokens over the window (the message Anthropic sends; seen in
        // docker/docker-agent#569 and anthropics/claude-code#4951).
        let over = br#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again"}}"#;
        assert_eq!(
            translate_error(400, None, over).code.as_deref(),
            Some("context_length_exceeded")
        );
        let other = br#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: field required"}}"#;
        assert_eq!(translate_error(400, None, other).code, None);
        assert_eq!(
            translate_error(401, None, b"{}").status,
            502,
            "a bad provider key is the gateway's fault"
        );
        assert_eq!(
            translate_error(500, None, b"oops").message,
            "Anthropic: oops"
        );
    }

    #[test]
    fn golden_basic_text_stream() {
        let (parts, a) = replay("basic_text.sse");
        assert_eq!(
            parts[0],
            StreamPart::Start {
                id: "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK".into(),
                model: "claude-3-opus-latest".into()
            }
        );
        assert_eq!(a.text, "Hello there!");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            a.usage.unwrap(),
            json!({"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17})
        );
        assert!(a.done && a.error.is_none() && a.tools.is_empty());
    }

    #[test]
    fn golden_text_then_tool_use_counts_tool_index_among_tools_only() {
        let (parts, a) = replay("text_then_tool_use.sse");
        assert!(parts.contains(&StreamPart::ToolCallStart {
            index: 0,
            id: "toolu_01NRLabsLyVHZPKxbKvkfSMn".into(),
            name: "get_weather".into()
        }));
        assert_eq!(a.text, "I'll check the current weather in Paris for you.");
        let (id, name, args) = &a.tools[&0];
        assert_eq!(
            (id.as_str(), name.as_str()),
            ("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather")
        );
        assert_eq!(
            serde_json::from_str::<Value>(args).unwrap(),
            json!({"location": "Paris"})
        );
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        let u = usage(&parts);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (377, 65, Some(0))
        );
    }

    #[test]
    fn golden_thinking_stream_streams_reasoning_and_gives_the_signed_block_back() {
        let (parts, a) = replay("thinking_then_text.sse");
        // The block's text in pieces under its index, then its signature once, when it
        // arrives (the empty start signature is not one).
        let pieces: String = parts
            .iter()
            .filter_map(|p| match p {
                StreamPart::SignedReasoningDelta { index: 0, text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(pieces, a.reasoning);
        let details: Vec<_> = parts
            .iter()
            .filter_map(|p| match p {
                StreamPart::ReasoningDetail { index, detail } => Some((*index, detail.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(details.len(), 1, "{details:?}");
        match &details[0] {
            (0, ReasoningDetail::Text { text, signature }) => {
                assert_eq!(text, "");
                assert!(signature.starts_with("EvQBCkYICxgCKkAxhD4"), "{signature}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.reasoning,
            "The previous result was 925. Now I need to divide that by 5.\n\n925 ÷ 5 = 185"
        );
        assert_eq!(a.text, "925 ÷ 5 = 185");
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        let u = usage(&parts);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (69, 53, 122),
            "output_tokens is cumulative, not summed"
        );
        assert!(!parts
            .iter()
            .any(|p| matches!(p, StreamPart::ReasoningDelta(s) if s.is_empty())));
    }

    #[test]
    fn golden_tool_use_without_arguments_gets_an_empty_object() {
        let (_, a) = replay("tool_use_without_arguments.sse");
        assert_eq!(
            a.tools[&0],
            (
                "toolu_01QE1WLsSVp5hy5Q3GmGTmjP".into(),
                "updateIssueList".into(),
                "{}".into()
            )
        );
        assert_eq!(a.text, "I'll update the issue list for you.");
        assert_eq!(a.usage.unwrap()["completion_tokens"], 48);
    }

    #[test]
    fn golden_max_tokens_inside_a_tool_call_reports_length() {
        let (_, a) = replay("max_tokens_inside_tool_use.sse");
        assert_eq!(a.finish_reason.as_deref(), Some("length"));
        let args = &a.tools[&0].2;
        assert!(args.starts_with("{\"filename\": \"taxes.txt\", \"lines_of_text\": [\n"));
        assert!(
            args.ends_with("\n\"Filing taxes"),
            "partial arguments are passed on as sent"
        );
        assert_eq!(a.usage.unwrap()["prompt_tokens"], 450);
    }

    #[test]
    fn golden_refusal_is_a_content_filter_finish() {
        let (_, a) = replay("refusal.sse");
        assert_eq!(a.finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(a.text, "");
    }

    #[test]
    fn golden_overloaded_mid_stream_is_an_error_not_a_success() {
        let (parts, a) = replay("overloaded_mid_stream.sse");
        match parts.last().unwrap() {
            StreamPart::Error(e) => {
                assert_eq!((e.status, e.code.as_deref()), (503, Some("overloaded")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.error.unwrap()["error"]["message"],
            "Anthropic: Overloaded"
        );
        assert!(a.finish_reason.is_none() && a.done);
    }

    #[test]
    fn a_cut_stream_ends_in_an_error() {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/anthropic/text_then_tool_use.sse",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let cut = &bytes[..bytes.len() / 2];
        let events = crate::sse::tests::assert_split_invariant(cut);
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for ev in &events {
            t.on_event(ev, &mut parts);
        }
        t.finish(&mut parts);
        assert!(matches!(parts.last(), Some(StreamPart::Error(e)) if e.status == 502));
        assert!(!parts.iter().any(|p| matches!(p, StreamPart::Finish(_))));
    }

    /// Constructed (not recorded): two parallel tool calls after text, to pin OpenAI indexes.
    #[test]
    fn parallel_tool_calls_get_consecutive_openai_indexes() {
        let events = [
            r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":5,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Both."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"a","input":{}}}"#,
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t2","name":"b","input":{}}}"#,
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"y\":2}"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"x\":1}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"content_block_stop","index":2}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let mut t = StreamTranslator::new();
        let mut parts = Vec::new();
        for data in events {
            t.on_event(
                &SseEvent {
                    event: None,
                    data: data.into(),
                },
                &mut parts,
            );
        }
        t.finish(&mut parts);
        let a = encode_all(parts);
        assert_eq!(a.tools[&0], ("t1".into(), "a".into(), "{\"x\":1}".into()));
        assert_eq!(a.tools[&1], ("t2".into(), "b".into(), "{\"y\":2}".into()));
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
    }
}

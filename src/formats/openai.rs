//! The one OpenAI Chat Completions encoder, shared by every translated provider.
//!
//! [`encode_response`] writes a `chat.completion` object; [`ChunkEncoder`] turns [`StreamPart`]s
//! into `chat.completion.chunk` SSE events ending in `data: [DONE]`. A failed stream ends with an
//! OpenAI-shaped error event before `[DONE]`, never with a made-up finish.

use serde::Serialize;

use crate::canonical::{ChatResponse, FinishReason, ReasoningDetail, StreamPart, Usage};
use crate::error::GatewayError;
use crate::sse::{write_data, DONE};

/// Encodes a non-streaming response as an OpenAI `chat.completion` JSON body.
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let body = ResponseOut {
        id: &resp.id,
        object: "chat.completion",
        created: resp.created,
        model: &resp.model,
        choices: resp
            .choices
            .iter()
            .map(|c| ChoiceOut {
                index: c.index,
                message: MessageOut {
                    role: "assistant",
                    content: c.message.content.as_deref(),
                    reasoning: c.message.reasoning.as_deref(),
                    reasoning_details: c
                        .message
                        .reasoning_details
                        .iter()
                        .enumerate()
                        .map(|(i, d)| ReasoningDetailOut::of(i as u32, d))
                        .collect(),
                    tool_calls: c
                        .message
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallOut {
                            id: &t.id,
                            kind: "function",
                            function: FunctionOut {
                                name: &t.name,
                                arguments: &t.arguments,
                            },
                        })
                        .collect(),
                    refusal: None,
                },
                logprobs: None,
                finish_reason: c.finish_reason.map(FinishReason::as_str),
            })
            .collect(),
        usage: resp.usage.as_ref().map(UsageOut::from),
    };
    serde_json::to_vec(&body).expect("response serializes")
}

/// The routing metadata of a stream, and where it goes. When the stream has a usage chunk (the
/// last chunk, `choices: []`, when the client asked for `include_usage`), the metadata rides in
/// it as `providerMetadata` (its `field`): no extra chunk, so clients that add up `usage`
/// over chunks count it once and the SDKs' stream helpers, which keep the last chunk's usage,
/// keep it. Otherwise it is a last chunk of its own (its `chunk`) that reads like any
/// other to an OpenAI client: one choice with an empty delta and no finish reason (a loop that
/// reads `choices[0]` keeps working) and `usage: null`.
///
/// A stream that fails after its content started ends with [`Trailer::failed`]'s chunk
/// instead (the serving attempt marked as failed), when one was given.
#[derive(Debug, Clone, Default)]
pub struct Trailer {
    chunk: Vec<u8>,
    field: Vec<u8>,
    /// The routing chunk of a stream that ends with an error (empty: `chunk`).
    failed_chunk: Vec<u8>,
}

impl Trailer {
    /// The routing metadata of a stream of `id`, `model`, `created`: `provider_metadata` (a JSON
    /// object) becomes `providerMetadata`.
    pub fn new(id: &str, model: &str, created: u64, provider_metadata: &[u8]) -> Trailer {
        let head = ChunkOut {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: &[ChunkChoice {
                index: 0,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: None,
            }],
            usage: Some(None),
        };
        let mut field = b",\"providerMetadata\":".to_vec();
        field.extend_from_slice(provider_metadata);
        let mut chunk = b"data: ".to_vec();
        chunk.extend_from_slice(&serde_json::to_vec(&head).expect("chunk serializes"));
        let brace = chunk.pop(); // the chunk's closing brace: the metadata goes before it
        chunk.extend_from_slice(&field);
        chunk.extend(brace);
        chunk.extend_from_slice(b"\n\n");
        Trailer {
            chunk,
            field,
            failed_chunk: Vec::new(),
        }
    }

    /// The same trailer, with `failed`'s chunk for a stream that ends with an error.
    pub fn failed(mut self, failed: Trailer) -> Trailer {
        self.failed_chunk = failed.chunk;
        self
    }

    /// A fixed event as the trailer, never carried in another chunk (tests).
    pub fn fixed(event: Vec<u8>) -> Trailer {
        Trailer {
            chunk: event,
            field: Vec::new(),
            failed_chunk: Vec::new(),
        }
    }
}

/// The end of every stream the gateway sends: the routing chunk (`trailer`, unless its metadata
/// rode in the usage chunk), the error event when the stream failed (right before `[DONE]`),
/// then `[DONE]`.
pub fn write_stream_end(
    out: &mut Vec<u8>,
    trailer: Option<&Trailer>,
    error: Option<&GatewayError>,
) {
    if let Some(t) = trailer {
        let failed = error.is_some() && !t.failed_chunk.is_empty();
        out.extend_from_slice(if failed { &t.failed_chunk } else { &t.chunk });
    }
    if let Some(e) = error {
        out.extend_from_slice(&e.to_sse_event());
    }
    out.extend_from_slice(DONE);
}

/// The end of one client stream ([`write_stream_end`]) and its routing metadata ([`Trailer`]).
/// The gateway knows the metadata only once the attempt has been judged a success: a stream
/// built [`StreamEnd::awaiting_trailer`] holds what needs it until then (a whole short answer in
/// the first read): an end reached, and the place in the output where a usage chunk takes the
/// metadata. Those are written when the trailer is set, so every stream that ends has its
/// routing metadata in its last chunk. By default the end is written at once, without metadata.
#[derive(Debug)]
pub struct StreamEnd {
    trailer: Option<Trailer>,
    /// An end reached before the trailer was set: its error, if it failed.
    held: Option<Option<GatewayError>>,
    /// The metadata rides in a usage chunk: no routing chunk of its own.
    carried: bool,
    /// Where in the output (the buffer the transform writes into until the trailer is set) the
    /// usage chunk takes the metadata, once known.
    pending_at: Option<usize>,
    /// The error the stream ended with, if it failed.
    failure: Option<GatewayError>,
}

impl Default for StreamEnd {
    fn default() -> Self {
        StreamEnd {
            trailer: Some(Trailer::default()),
            ..Self::awaiting_trailer()
        }
    }
}

impl StreamEnd {
    /// An end that waits for its trailer (see the type).
    pub fn awaiting_trailer() -> Self {
        StreamEnd {
            trailer: None,
            held: None,
            carried: false,
            pending_at: None,
            failure: None,
        }
    }

    /// Whether a usage chunk already took the metadata.
    pub fn carried(&self) -> bool {
        self.carried
    }

    /// A usage chunk was just written to `out`, its closing brace at `out[brace]`: the metadata
    /// goes in before it (now, or when the trailer is set; `out` must then be the same buffer,
    /// only appended to).
    pub fn carry(&mut self, out: &mut Vec<u8>, brace: usize) {
        if self.carried {
            return;
        }
        match &self.trailer {
            Some(t) if t.field.is_empty() => return, // nothing to carry: a routing chunk it is
            Some(t) => {
                out.splice(brace..brace, t.field.iter().copied());
            }
            None => self.pending_at = Some(brace),
        }
        self.carried = true;
    }

    /// The error the stream ended with, if it failed.
    pub fn failure(&self) -> Option<&GatewayError> {
        self.failure.as_ref()
    }

    /// Writes the end, or holds it until [`StreamEnd::set_trailer`].
    pub fn write(&mut self, out: &mut Vec<u8>, error: Option<&GatewayError>) {
        self.failure = error.cloned();
        match &self.trailer {
            Some(trailer) => write_stream_end(out, self.routing_chunk(trailer, error), error),
            None => self.held = Some(error.cloned()),
        }
    }

    /// The routing chunk the end carries: none when a usage chunk took the metadata, unless
    /// the stream then failed (the failed metadata goes last, after the usage chunk's).
    fn routing_chunk<'t>(
        &self,
        trailer: &'t Trailer,
        error: Option<&GatewayError>,
    ) -> Option<&'t Trailer> {
        (!self.carried || (error.is_some() && !trailer.failed_chunk.is_empty())).then_some(trailer)
    }

    /// Sets the trailer; what waited for it is written to `out` now.
    pub fn set_trailer(&mut self, trailer: Trailer, out: &mut Vec<u8>) {
        if let Some(at) = self.pending_at.take() {
            if trailer.field.is_empty() {
                self.carried = false; // a fixed trailer cannot ride along: its own chunk
            } else {
                out.splice(at..at, trailer.field.iter().copied());
            }
        }
        if let Some(error) = self.held.take() {
            write_stream_end(
                out,
                self.routing_chunk(&trailer, error.as_ref()),
                error.as_ref(),
            );
        }
        self.trailer = Some(trailer);
    }
}

/// Writes OpenAI `chat.completion.chunk` events for a translated stream.
#[derive(Debug)]
pub struct ChunkEncoder {
    /// The `id` of every chunk.
    pub id: String,
    /// The gateway model id shown to the client.
    pub model: String,
    /// Unix seconds, the same on every chunk.
    pub created: u64,
    /// `stream_options.include_usage`: send a final usage chunk.
    pub include_usage: bool,
    started: bool,
    finished: bool,
    done: bool,
    usage: Option<Usage>,
    /// The stream's end, with the routing trailer.
    end: StreamEnd,
}

impl ChunkEncoder {
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        include_usage: bool,
    ) -> Self {
        ChunkEncoder {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            started: false,
            finished: false,
            done: false,
            usage: None,
            end: StreamEnd::default(),
        }
    }

    /// The stream's end waits for [`ChunkEncoder::set_trailer`] ([`StreamEnd::awaiting_trailer`]).
    pub fn awaiting_trailer(mut self) -> Self {
        self.end = StreamEnd::awaiting_trailer();
        self
    }

    /// Sets the event written last before the stream's end (see [`ChunkEncoder::finish`]); an
    /// end already reached is written to `out` now ([`StreamEnd`]).
    pub fn set_trailer(&mut self, trailer: Trailer, out: &mut Vec<u8>) {
        self.end.set_trailer(trailer, out);
    }

    /// Whether the stream's end (`[DONE]`, after an error or `finish`) has been written.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The error the stream ended with, if it failed.
    pub fn failure(&self) -> Option<&GatewayError> {
        self.end.failure()
    }

    /// Appends the events for one part. Parts after an error (or after `finish`) are ignored.
    pub fn encode(&mut self, part: StreamPart, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match part {
            StreamPart::Start { .. } => self.ensure_started(out),
            StreamPart::TextDelta(text) if !text.is_empty() => self.write_delta(
                out,
                Delta {
                    content: Some(&text),
                    ..Delta::default()
                },
                None,
            ),
            StreamPart::ReasoningDelta(text) if !text.is_empty() => self.write_delta(
                out,
                Delta {
                    reasoning: Some(&text),
                    ..Delta::default()
                },
                None,
            ),
            StreamPart::TextDelta(_) | StreamPart::ReasoningDelta(_) => {}
            // The piece as `reasoning` and as its block's `reasoning_details` item, in one
            // chunk (as OpenRouter streams it): clients read one or the other, never both.
            StreamPart::SignedReasoningDelta { index, text } if !text.is_empty() => self
                .write_delta(
                    out,
                    Delta {
                        reasoning: Some(&text),
                        reasoning_details: Some([ReasoningDetailOut::text_piece(index, &text)]),
                        ..Delta::default()
                    },
                    None,
                ),
            StreamPart::SignedReasoningDelta { .. } => {}
            StreamPart::ReasoningDetail { index, detail } => self.write_delta(
                out,
                Delta {
                    reasoning_details: Some([ReasoningDetailOut::of(index, &detail)]),
                    ..Delta::default()
                },
                None,
            ),
            StreamPart::ToolCallStart { index, id, name } => {
                let call = ToolDelta {
                    index,
                    id: Some(&id),
                    kind: Some("function"),
                    function: FnDelta {
                        name: Some(&name),
                        arguments: Some(""),
                    },
                };
                self.write_delta(
                    out,
                    Delta {
                        tool_calls: Some([call]),
                        ..Delta::default()
                    },
                    None,
                )
            }
            StreamPart::ToolCallArgs { index, delta } => {
                let call = ToolDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FnDelta {
                        name: None,
                        arguments: Some(&delta),
                    },
                };
                self.write_delta(
                    out,
                    Delta {
                        tool_calls: Some([call]),
                        ..Delta::default()
                    },
                    None,
                )
            }
            StreamPart::Finish(reason) => {
                self.finished = true;
                self.write_delta(out, Delta::default(), Some(reason.as_str()))
            }
            StreamPart::Usage(u) => self.usage = Some(u),
            StreamPart::Error(e) => self.write_error(&e, out),
        }
    }

    /// Ends the stream: the usage chunk when asked for, the trailer, then `[DONE]`. A stream
    /// that never finished gets an error event instead of a silent end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.finished {
            let e = GatewayError::bad_gateway("The upstream stream ended without a finish reason.");
            self.write_error(&e, out);
            return;
        }
        if let Some(u) = self.usage.filter(|_| self.include_usage) {
            let chunk = ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(UsageOut::from(&u))),
            };
            write_data(out, &serde_json::to_vec(&chunk).expect("chunk serializes"));
            // The usage chunk is the last: the routing metadata rides in it.
            let brace = out.len() - 3; // before "}\n\n"
            self.end.carry(out, brace);
        }
        self.end.write(out, None);
        self.done = true;
    }

    fn write_error(&mut self, e: &GatewayError, out: &mut Vec<u8>) {
        self.end.write(out, Some(e));
        self.done = true;
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            };
            self.write_chunk(out, delta, None);
        }
    }

    fn write_delta(&mut self, out: &mut Vec<u8>, delta: Delta<'_>, finish: Option<&str>) {
        self.ensure_started(out);
        self.write_chunk(out, delta, finish);
    }

    fn write_chunk(&self, out: &mut Vec<u8>, delta: Delta<'_>, finish_reason: Option<&str>) {
        let choices = [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: if self.include_usage { Some(None) } else { None },
        };
        write_data(out, &serde_json::to_vec(&chunk).expect("chunk serializes"));
    }
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    reasoning_details: Vec<ReasoningDetailOut<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    refusal: Option<()>,
}

/// One item of `reasoning_details` (OpenRouter's shape, which the Vercel AI Gateway shares).
#[derive(Serialize)]
struct ReasoningDetailOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    format: &'static str,
    index: u32,
}

impl<'a> ReasoningDetailOut<'a> {
    /// A piece of the text of a Claude thinking block (its signature comes in a later item).
    fn text_piece(index: u32, text: &'a str) -> Self {
        ReasoningDetailOut {
            kind: "reasoning.text",
            text: Some(text),
            signature: None,
            data: None,
            id: None,
            format: crate::canonical::ANTHROPIC_REASONING_FORMAT,
            index,
        }
    }

    fn of(index: u32, detail: &'a ReasoningDetail) -> Self {
        use crate::canonical::{ANTHROPIC_REASONING_FORMAT, GEMINI_REASONING_FORMAT};
        let mut out = ReasoningDetailOut {
            kind: "reasoning.encrypted",
            text: None,
            signature: None,
            data: None,
            id: None,
            format: ANTHROPIC_REASONING_FORMAT,
            index,
        };
        match detail {
            ReasoningDetail::Text { text, signature } => {
                out.kind = "reasoning.text";
                out.text = Some(text);
                out.signature = Some(signature);
            }
            ReasoningDetail::Encrypted { data } => out.data = Some(data),
            ReasoningDetail::ToolCallSignature { id, data } => {
                out.data = Some(data);
                out.id = Some(id);
                out.format = GEMINI_REASONING_FORMAT;
            }
        }
        out
    }
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
    /// Not an OpenAI field: Anthropic's cache writes, named as OpenRouter names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<u64>,
}

#[derive(Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        let prompt_tokens_details = (u.cached_tokens.is_some() || u.cache_write_tokens.is_some())
            .then(|| PromptDetails {
                cached_tokens: u.cached_tokens.unwrap_or(0),
                cache_write_tokens: u.cache_write_tokens,
            });
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            prompt_tokens_details,
            completion_tokens_details: u
                .reasoning_tokens
                .map(|reasoning_tokens| CompletionDetails { reasoning_tokens }),
        }
    }
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    /// Absent without `include_usage`; `null` on every chunk but the last with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_details: Option<[ReasoningDetailOut<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FnDelta<'a>,
}

#[derive(Serialize)]
struct FnDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
}

/// Test helpers shared by the provider golden tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::sse::SseDecoder;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// What a client assembles from an encoded stream.
    #[derive(Debug, Default, PartialEq)]
    pub(crate) struct Assembled {
        pub text: String,
        pub reasoning: String,
        /// By OpenAI tool index: (id, name, arguments).
        pub tools: BTreeMap<u64, (String, String, String)>,
        pub finish_reason: Option<String>,
        pub usage: Option<Value>,
        pub error: Option<Value>,
        pub done: bool,
        pub chunks: Vec<Value>,
    }

    /// Decodes the encoder's output the way an OpenAI client would, checking its framing.
    pub(crate) fn assemble(bytes: &[u8]) -> Assembled {
        let mut d = SseDecoder::new();
        d.feed(bytes);
        let mut a = Assembled::default();
        while let Some(ev) = d.next_event() {
            assert!(!a.done, "nothing may follow [DONE]");
            if ev.is_done() {
                a.done = true;
                continue;
            }
            let v: Value = serde_json::from_str(&ev.data).unwrap();
            if v.get("error").is_some() {
                a.error = Some(v);
                continue;
            }
            absorb_chunk(&mut a, &v);
            a.chunks.push(v);
        }
        assert!(d.finish().is_none(), "stream ends on an event boundary");
        a
    }

    fn absorb_chunk(a: &mut Assembled, v: &Value) {
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            assert_eq!(v["choices"], Value::Array(vec![]));
            a.usage = Some(u.clone());
        }
        for c in v["choices"].as_array().unwrap() {
            let d = &c["delta"];
            a.text.push_str(d["content"].as_str().unwrap_or(""));
            a.reasoning.push_str(d["reasoning"].as_str().unwrap_or(""));
            for t in d["tool_calls"].as_array().into_iter().flatten() {
                let e = a.tools.entry(t["index"].as_u64().unwrap()).or_default();
                if let Some(id) = t["id"].as_str() {
                    e.0 = id.to_owned();
                    e.1 = t["function"]["name"].as_str().unwrap().to_owned();
                }
                e.2.push_str(t["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = c["finish_reason"].as_str() {
                assert!(a.finish_reason.is_none(), "one finish chunk");
                a.finish_reason = Some(f.to_owned());
            }
        }
    }

    /// Encodes parts with a fresh encoder (`include_usage` on) and assembles the result.
    pub(crate) fn encode_all(parts: Vec<StreamPart>) -> Assembled {
        let mut enc = ChunkEncoder::new("chatcmpl-test", "gw/model", 1_700_000_000, true);
        let mut out = Vec::new();
        for p in parts {
            enc.encode(p, &mut out);
        }
        enc.finish(&mut out);
        assemble(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::canonical::{AssistantMessage, Choice, ResponseToolCall};
    use serde_json::{json, Value};

    fn usage() -> Usage {
        Usage {
            prompt_tokens: 30,
            completion_tokens: 12,
            total_tokens: 42,
            cached_tokens: Some(20),
            cache_write_tokens: Some(5),
            reasoning_tokens: Some(7),
        }
    }

    #[test]
    fn a_stream_failing_after_its_usage_chunk_took_the_metadata_ends_with_the_failed_one() {
        let trailer = || {
            Trailer::new("gen_1", "m", 1, br#"{"ok":true}"#).failed(Trailer::new(
                "gen_1",
                "m",
                1,
                br#"{"ok":false}"#,
            ))
        };
        let usage_chunk = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n";
        let brace = usage_chunk.len() - 3;
        let error = GatewayError::bad_gateway("cut");
        // Trailer known before the usage chunk, and set only after the end was reached.
        for late in [false, true] {
            let mut end = if late {
                StreamEnd::awaiting_trailer()
            } else {
                let mut e = StreamEnd::awaiting_trailer();
                e.set_trailer(trailer(), &mut Vec::new());
                e
            };
            let mut out = usage_chunk.to_vec();
            end.carry(&mut out, brace);
            end.write(&mut out, Some(&error));
            if late {
                end.set_trailer(trailer(), &mut out);
            }
            let text = String::from_utf8(out).unwrap();
            let ok = text
                .find(r#"{"ok":true}"#)
                .expect("the usage chunk carries it");
            let failed = text
                .find(r#"{"ok":false}"#)
                .expect("the failed one follows");
            let err = text.find("\"cut\"").unwrap();
            assert!(ok < failed && failed < err, "late {late}: {text}");
            assert!(text.ends_with("data: [DONE]\n\n"));
            // A clean end adds nothing after the usage chunk's metadata.
            let mut end = StreamEnd::awaiting_trailer();
            end.set_trailer(trailer(), &mut Vec::new());
            let mut out = usage_chunk.to_vec();
            end.carry(&mut out, brace);
            end.write(&mut out, None);
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains(r#"{"ok":false}"#), "{text}");
            assert_eq!(text.matches(r#"{"ok":true}"#).count(), 1, "{text}");
        }
    }

    #[test]
    fn response_has_openais_exact_shape() {
        let resp = ChatResponse {
            id: "msg_1".into(),
            model: "gw/model".into(),
            created: 1_700_000_000,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    content: Some("hi".into()),
                    reasoning: Some("think".into()),
                    reasoning_details: vec![
                        ReasoningDetail::Text {
                            text: "think".into(),
                            signature: "sig".into(),
                        },
                        ReasoningDetail::Encrypted { data: "enc".into() },
                    ],
                    tool_calls: vec![ResponseToolCall {
                        id: "call_1".into(),
                        name: "f".into(),
                        arguments: "{\"a\":1}".into(),
                    }],
                },
                finish_reason: Some(FinishReason::ToolCalls),
            }],
            usage: Some(usage()),
        };
        let v: Value = serde_json::from_slice(&encode_response(&resp)).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "msg_1", "object": "chat.completion", "created": 1_700_000_000u64, "model": "gw/model",
                "choices": [{"index": 0, "message": {
                    "role": "assistant", "content": "hi", "reasoning": "think", "refusal": null,
                    "reasoning_details": [
                        {"type": "reasoning.text", "text": "think", "signature": "sig", "format": "anthropic-claude-v1", "index": 0},
                        {"type": "reasoning.encrypted", "data": "enc", "format": "anthropic-claude-v1", "index": 1}
                    ],
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]
                }, "logprobs": null, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42,
                    "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
                    "completion_tokens_details": {"reasoning_tokens": 7}}
            })
        );
    }

    #[test]
    fn a_tool_only_response_has_null_content_and_no_reasoning_key() {
        let resp = ChatResponse {
            id: "x".into(),
            model: "m".into(),
            created: 0,
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage::default(),
                finish_reason: None,
            }],
            usage: None,
        };
        let v: Value = serde_json::from_slice(&encode_response(&resp)).unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert!(msg.get("reasoning").is_none() && msg.get("tool_calls").is_none());
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn stream_chunks_follow_openais_sequence() {
        let a = encode_all(vec![
            StreamPart::Start {
                id: "msg_1".into(),
                model: "claude".into(),
            },
            StreamPart::ReasoningDelta("hmm".into()),
            StreamPart::TextDelta("Hel".into()),
            StreamPart::TextDelta("lo".into()),
            StreamPart::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "f".into(),
            },
            StreamPart::ToolCallArgs {
                index: 0,
                delta: "{\"x\":".into(),
            },
            StreamPart::ToolCallArgs {
                index: 0,
                delta: "1}".into(),
            },
            StreamPart::Usage(usage()),
            StreamPart::Finish(FinishReason::ToolCalls),
        ]);
        assert_eq!(
            a.chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(
            a.chunks[0]["usage"],
            Value::Null,
            "usage is null until the last chunk"
        );
        assert_eq!(a.chunks[0]["model"], "gw/model");
        assert_eq!(a.text, "Hello");
        assert_eq!(a.reasoning, "hmm");
        assert_eq!(
            a.tools[&0],
            ("call_a".into(), "f".into(), "{\"x\":1}".into())
        );
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            a.usage.as_ref().unwrap()["completion_tokens_details"]["reasoning_tokens"],
            7
        );
        assert!(a.done && a.error.is_none());
        let start = &a.chunks[4]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            start,
            &json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        let last = a.chunks.last().unwrap();
        assert_eq!(
            last["choices"],
            json!([]),
            "the usage chunk comes last, after the finish chunk"
        );
    }

    #[test]
    fn without_include_usage_there_is_no_usage_key() {
        let mut enc = ChunkEncoder::new("id", "m", 1, false);
        let mut out = Vec::new();
        enc.encode(StreamPart::TextDelta("a".into()), &mut out);
        enc.encode(StreamPart::Usage(usage()), &mut out);
        enc.encode(StreamPart::Finish(FinishReason::Stop), &mut out);
        enc.finish(&mut out);
        let a = assemble(&out);
        assert!(a.chunks.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(
            a.chunks[0]["choices"][0]["delta"]["role"], "assistant",
            "role comes first even without Start"
        );
        assert!(a.done);
    }

    #[test]
    fn an_error_part_ends_the_stream_with_an_error_event_and_done() {
        let a = encode_all(vec![
            StreamPart::TextDelta("partial".into()),
            StreamPart::Error(GatewayError::upstream(503, "Overloaded").with_code("overloaded")),
            StreamPart::TextDelta("ignored".into()),
            StreamPart::Finish(FinishReason::Stop),
        ]);
        assert_eq!(a.text, "partial");
        assert_eq!(a.error.unwrap()["error"]["message"], "Overloaded");
        assert!(a.finish_reason.is_none(), "no fake success after an error");
        assert!(a.done);
    }

    #[test]
    fn an_end_awaiting_its_trailer_is_held_then_written_with_it() {
        for error in [None, Some(GatewayError::upstream(503, "Overloaded"))] {
            let mut enc = ChunkEncoder::new("id", "m", 1, false).awaiting_trailer();
            let mut out = Vec::new();
            enc.encode(StreamPart::TextDelta("a".into()), &mut out);
            match &error {
                None => enc.encode(StreamPart::Finish(FinishReason::Stop), &mut out),
                Some(e) => enc.encode(StreamPart::Error(e.clone()), &mut out),
            }
            enc.finish(&mut out);
            assert!(enc.is_done());
            assert!(!out.ends_with(DONE), "held until the trailer is known");
            enc.set_trailer(
                crate::formats::openai::Trailer::fixed(b"data: {\"t\":1}\n\n".to_vec()),
                &mut out,
            );
            let events = crate::sse::tests::decode_pieces(&[&out]);
            let n = events.len();
            assert!(events[n - 1].is_done());
            assert_eq!(events.iter().filter(|e| e.is_done()).count(), 1);
            let trailer_at = if error.is_some() {
                assert!(events[n - 2].data.contains("Overloaded"));
                n - 3
            } else {
                n - 2
            };
            assert_eq!(events[trailer_at].data, "{\"t\":1}");
            // Nothing more once ended.
            let before = out.len();
            enc.finish(&mut out);
            assert_eq!(out.len(), before);
        }
    }

    #[test]
    fn the_trailer_is_the_last_chunk_of_every_ending() {
        let trailer = b"data: {\"t\":1}\n\n";
        let end = |parts: Vec<StreamPart>| {
            let mut enc = ChunkEncoder::new("id", "m", 1, true);
            enc.set_trailer(
                crate::formats::openai::Trailer::fixed(trailer.to_vec()),
                &mut Vec::new(),
            );
            let mut out = Vec::new();
            for p in parts {
                enc.encode(p, &mut out);
            }
            enc.finish(&mut out);
            String::from_utf8(out).unwrap()
        };
        // A clean end: usage chunk, trailer, [DONE].
        let clean = end(vec![
            StreamPart::TextDelta("a".into()),
            StreamPart::Usage(usage()),
            StreamPart::Finish(FinishReason::Stop),
        ]);
        let usage_at = clean.find("\"usage\"").unwrap();
        assert!(usage_at < clean.find("{\"t\":1}").unwrap());
        assert!(
            clean.ends_with("data: {\"t\":1}\n\ndata: [DONE]\n\n"),
            "{clean}"
        );
        // A provider's error, and a stream that stopped without a finish: trailer, error, [DONE].
        for failed in [
            end(vec![
                StreamPart::TextDelta("a".into()),
                StreamPart::Error(GatewayError::upstream(503, "Overloaded")),
            ]),
            end(vec![StreamPart::TextDelta("a".into())]),
        ] {
            let tail = &failed[failed.find("data: {\"t\":1}").unwrap()..];
            let events: Vec<&str> = tail.split("\n\n").filter(|e| !e.is_empty()).collect();
            assert_eq!(events.len(), 3, "{failed}");
            assert!(events[1].starts_with("data: {\"error\""), "{failed}");
            assert_eq!(events[2], "data: [DONE]");
            assert_eq!(failed.matches("{\"t\":1}").count(), 1);
        }
    }

    #[test]
    fn a_stream_without_finish_ends_in_an_error() {
        let a = encode_all(vec![StreamPart::TextDelta("cut".into())]);
        assert_eq!(a.error.unwrap()["error"]["code"], "upstream_unavailable");
        assert!(a.done && a.finish_reason.is_none());
    }
}

//! OpenAI-compatible providers: the request goes as the client wrote it (a provider's own names
//! for a few top-level fields aside, [`request_field`]) and the stream passes through byte for
//! byte. This scanner reads only
//! what the gateway must know: whether content has started (until then a failure may fall back
//! to another provider), where `[DONE]` is (the routing trailer goes just before it), and whether
//! the stream was cut (then it closes with an error event and `[DONE]`, never silently).

use crate::error::GatewayError;
use crate::formats::openai::{StreamEnd, Trailer};
use crate::platform::{FetchError, Progress, StreamTransform};
use crate::routing::AttemptOutcome;
use crate::sse::{self, SseDecoder};
use serde::Deserialize;

/// The name under which `provider` takes the request's top-level field `key` (`None`: left out),
/// where its API differs from OpenAI's and refuses or ignores the field otherwise. Mistral
/// answers 422 `extra_forbidden` to `stream_options` (its streams carry usage in their last
/// chunk anyway) and to `seed` (its name is `random_seed`). Mistral and DeepSeek name the answer
/// budget `max_tokens` (Mistral refuses `max_completion_tokens`, DeepSeek ignores it and answers
/// at length), which then gives way to it, as `max_completion_tokens` wins at OpenAI.
/// `sets(field)`: whether the request sets that top-level field (not null); the provider's own
/// name, when the request also sets it, wins.
pub fn request_field<'k>(
    provider: &str,
    sets: impl Fn(&str) -> bool,
    key: &'k str,
) -> Option<&'k str> {
    match (provider, key) {
        ("mistral", "stream_options") => None,
        ("mistral", "seed") => (!sets("random_seed")).then_some("random_seed"),
        // (A null one beside a `seed` would be a second key of that name.)
        ("mistral", "random_seed") if !sets("random_seed") => None,
        ("mistral" | "deepseek", "max_tokens") if sets("max_completion_tokens") => None,
        ("mistral" | "deepseek", "max_completion_tokens") => {
            sets("max_completion_tokens").then_some("max_tokens")
        }
        _ => Some(key),
    }
}

/// The fields of an assistant message that `provider` is not sent: the gateway's own
/// `reasoning` and `reasoning_details` (which it returns for Claude and Gemini to have back; no
/// OpenAI-compatible provider takes them: Groq and Mistral refuse the request, as after a
/// fallback from a translated model), and for Mistral, which refuses every field its schema
/// lacks, the `refusal` and `annotations` of OpenAI's answers given back as they came.
fn fields_not_sent(provider: &str) -> &'static [&'static str] {
    match provider {
        "mistral" => &FIELDS_NOT_SENT[..4],
        _ => &FIELDS_NOT_SENT[..2],
    }
}

/// The fields [`fields_not_sent`] takes out, and each as a quoted JSON key (what the body is
/// searched for first; no allocation on the hot path).
const FIELDS_NOT_SENT: [&str; 4] = ["reasoning", "reasoning_details", "refusal", "annotations"];
const QUOTED_NOT_SENT: [&[u8]; 4] = [
    b"\"reasoning\"",
    b"\"reasoning_details\"",
    b"\"refusal\"",
    b"\"annotations\"",
];

/// `body` without the message fields `fields_not_sent` names for `provider`, every other byte as
/// sent. `None`: nothing to take out (the usual case costs a substring search or three).
pub fn without_fields_not_sent(provider: &str, body: &[u8]) -> Option<Vec<u8>> {
    let fields = fields_not_sent(provider);
    let present = |quoted: &&[u8]| memchr::memmem::find(body, quoted).is_some();
    if !QUOTED_NOT_SENT[..fields.len()].iter().any(present) {
        return None;
    }
    crate::chat_body::without_message_fields(body, fields)
}

/// The pass-through stream transform for OpenAI-compatible providers.
pub struct PassThroughStream {
    provider: &'static str,
    progress: Progress,
    /// Until content starts, events are decoded to judge them.
    decoder: SseDecoder,
    /// Bytes after the last complete event, held until the event completes.
    held: Vec<u8>,
    lines: EventEnds,
    done: bool,
    saw_finish: bool,
    end: StreamEnd,
    /// The first `id`, `model` and `created` seen in the provider's chunks.
    id: Option<String>,
    model: Option<String>,
    created: Option<u64>,
}

#[derive(Deserialize)]
struct Chunk {
    // (Any JSON: a provider's odd `created` or numeric `id` must not stop its chunks being
    // judged.)
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    created: Option<serde_json::Value>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    usage: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

impl PassThroughStream {
    pub fn new(provider: &'static str) -> Self {
        PassThroughStream {
            provider,
            progress: Progress::Pending,
            decoder: SseDecoder::new(),
            held: Vec::new(),
            lines: EventEnds::default(),
            done: false,
            saw_finish: false,
            end: StreamEnd::default(),
            id: None,
            model: None,
            created: None,
        }
    }

    /// The stream's end waits for `set_trailer` ([`StreamEnd::awaiting_trailer`]).
    pub fn awaiting_trailer(mut self) -> Self {
        self.end = StreamEnd::awaiting_trailer();
        self
    }

    /// Judges one event seen before content started.
    fn judge(&mut self, event: Option<&str>, data: &str) {
        if data == "[DONE]" {
            self.progress = Progress::Content;
            return;
        }
        if crate::chat_body::too_complex(data.as_bytes()) {
            let error =
                crate::chat_body::too_complex_error("a stream event").with_provider(self.provider);
            self.progress = Progress::Failed {
                error,
                retryable: true,
            };
            return;
        }
        let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
            // Not JSON at all, before any content: the client's SDK would fail on it, and
            // another attempt may serve. (JSON of another shape is not ours to judge: passed
            // on as sent, as is anything once content has started.)
            if !data.trim().is_empty()
                && serde_json::from_str::<serde::de::IgnoredAny>(data).is_err()
            {
                let error = GatewayError::bad_gateway(format!(
                    "The provider `{}` sent a stream event that is not JSON.",
                    self.provider
                ))
                .with_code("malformed_response")
                .with_provider(self.provider);
                self.progress = Progress::Failed {
                    error,
                    retryable: true,
                };
            }
            return;
        };
        let text = |v: Option<serde_json::Value>| match v {
            Some(serde_json::Value::String(s)) => Some(s),
            _ => None,
        };
        self.id = self.id.take().or_else(|| text(chunk.id));
        self.model = self.model.take().or_else(|| text(chunk.model));
        self.created = self
            .created
            .or_else(|| chunk.created.as_ref().and_then(serde_json::Value::as_u64));
        // An error in OpenAI's shape, or an `event: error` whose data is the error itself.
        let error = chunk.error.or_else(|| {
            (event == Some("error"))
                .then(|| serde_json::from_str::<serde_json::Value>(data).ok())
                .flatten()
        });
        if let Some(err) = error {
            let message = err["message"]
                .as_str()
                .or(err.as_str())
                .unwrap_or("The provider reported an error in its stream.")
                .to_owned();
            let status = stream_error_status(&err);
            let mut error = GatewayError::upstream(status, message).with_provider(self.provider);
            if let Some(code) = err["code"].as_str().or(err["type"].as_str()) {
                error.code = Some(code.to_owned());
            }
            self.progress = Progress::Failed {
                error,
                retryable: AttemptOutcome::Status(status).is_retryable(),
            };
            return;
        }
        let content = chunk.usage.is_some()
            || chunk.choices.iter().any(|c| {
                c.finish_reason.is_some()
                    || c.delta.as_ref().is_some_and(|d| {
                        d.iter().any(|(k, v)| match k.as_str() {
                            "role" => false,
                            _ => match v {
                                serde_json::Value::String(s) => !s.is_empty(),
                                serde_json::Value::Array(a) => !a.is_empty(),
                                // (Together's `token_id` rides in every delta, the first too.)
                                serde_json::Value::Null
                                | serde_json::Value::Number(_)
                                | serde_json::Value::Bool(_) => false,
                                serde_json::Value::Object(_) => true,
                            },
                        })
                    })
            });
        if content {
            self.progress = Progress::Content;
        }
    }

    /// Sends complete events on, up to a `[DONE]` (replaced by the trailer and our own).
    fn forward(&mut self, events: &[u8], out: &mut Vec<u8>) {
        if !self.saw_finish {
            self.saw_finish = has_finish_reason(events);
        }
        let done = done_at(events);
        let sent = &events[..done.unwrap_or(events.len())];
        let base = out.len();
        out.extend_from_slice(sent);
        if !self.end.carried() && has_usage_object(sent) {
            if let Some(brace) = usage_chunk_brace(sent) {
                self.end.carry(out, base + brace);
            }
        }
        if done.is_some() {
            self.close(out);
        }
    }

    /// An event outgrew [`sse::MAX_EVENT_BYTES`]: the stream ends here (a failure to fall back
    /// from if content had not started).
    fn refuse_oversized(&mut self, out: &mut Vec<u8>) {
        self.fail(sse::oversized_event_error(), out);
    }

    /// Ends the stream on a failure: the routing trailer (the last chunk), the error event, then
    /// `[DONE]`, so a client reads the error just before the end.
    fn fail(&mut self, error: GatewayError, out: &mut Vec<u8>) {
        let error = error.with_provider(self.provider);
        self.end.write(out, Some(&error));
        self.done = true;
        self.held = Vec::new();
        if self.progress == Progress::Pending {
            self.progress = Progress::Failed {
                error,
                retryable: true,
            };
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        self.end.write(out, None);
        self.done = true;
        self.held = Vec::new();
    }
}

/// Finds where SSE events end (just past the blank line that closes each), one byte stream fed
/// in pieces. Lines end in LF, CR or CRLF, as the SSE format allows; a CRLF split across two
/// pieces is one line ending.
#[derive(Default)]
struct EventEnds {
    /// The current line has no bytes yet (the last byte was a line ending).
    line_empty: bool,
    /// The last byte was a CR, which an LF may complete.
    after_cr: bool,
}

impl EventEnds {
    /// Feeds `bytes`; returns the end of the last event completed inside them, if any.
    fn last_end(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut last = None;
        let mut i = 0;
        while let Some(k) = memchr::memchr2(b'\n', b'\r', &bytes[i..]) {
            let at = i + k;
            if k > 0 {
                self.line_empty = false;
                self.after_cr = false;
            }
            if bytes[at] == b'\n' && self.after_cr {
                // the LF of a CRLF: part of the line ending just seen
                self.after_cr = false;
                if last == Some(at) {
                    last = Some(at + 1);
                }
            } else {
                if self.line_empty {
                    last = Some(at + 1);
                }
                self.line_empty = true;
                self.after_cr = bytes[at] == b'\r';
            }
            i = at + 1;
        }
        if i < bytes.len() {
            self.line_empty = false;
            self.after_cr = false;
        }
        last
    }
}

/// Whether `held` (what followed the last complete event) is whole but for its closing blank
/// line: each of its data is JSON or `[DONE]`, and a line without data is a comment or a whole
/// `event:`, `id:` or `retry:` field (`dat`, cut inside `data:`, is not).
fn is_whole_event(held: &[u8]) -> bool {
    let held_text = held.strip_prefix("\u{feff}".as_bytes()).unwrap_or(held);
    let lines_whole = held_text
        .split(|b| matches!(b, b'\n' | b'\r'))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .all(|l| {
            [&b":"[..], b"data:", b"event:", b"id:", b"retry:"]
                .iter()
                .any(|p| l.starts_with(p))
        });
    if !lines_whole {
        return false;
    }
    let mut decoder = SseDecoder::new();
    decoder.feed(held);
    decoder.feed(b"\n\n");
    while let Some(ev) = decoder.next_event() {
        if ev.data != "[DONE]" && serde_json::from_str::<serde::de::IgnoredAny>(&ev.data).is_err() {
            return false;
        }
    }
    true
}

/// The HTTP status an error object sent inside a stream stands for. Providers send OpenAI's
/// shape (`message`, `type`, a string `code`), a numeric `code` or `status` (OpenRouter, vLLM),
/// or a bare string (Groq). Only a recognisable fault of the request is final (400); an error
/// of unknown cause before any content counts as the provider's (503), so another attempt may
/// serve.
fn stream_error_status(err: &serde_json::Value) -> u16 {
    let number = ["code", "status", "status_code"]
        .iter()
        .find_map(|k| err[k].as_u64().filter(|n| (400..600).contains(n)));
    if let Some(n) = number {
        return n as u16;
    }
    let said = |words: &[&str]| {
        [&err["code"], &err["type"]].iter().any(|v| {
            v.as_str().is_some_and(|s| {
                let s = s.to_ascii_lowercase();
                words.iter().any(|w| s.contains(w))
            })
        })
    };
    if said(&["rate_limit"]) {
        429
    } else if said(&["api_key", "authentication", "unauthorized"]) {
        401 // the gateway's credential (handled as the provider's 401)
    } else if said(&["permission", "forbidden"]) {
        403
    } else if said(&[
        "invalid",
        "bad_request",
        "context_length",
        "tool_use_failed",
        "not_found",
        "unsupported",
        "content_filter",
        "content_policy",
    ]) {
        400
    } else {
        503
    }
}

type Finder = memchr::memmem::Finder<'static>;

/// The substring searchers the scanner runs on every event, built once.
fn needles() -> &'static (Finder, Finder, Finder) {
    static NEEDLES: std::sync::OnceLock<(Finder, Finder, Finder)> = std::sync::OnceLock::new();
    let finder = |needle: &[u8]| {
        memchr::memmem::FinderBuilder::new()
            .prefilter(memchr::memmem::Prefilter::None)
            .build_forward(needle)
            .into_owned()
    };
    NEEDLES.get_or_init(|| (finder(FINISH_KEY), finder(DONE), finder(USAGE_KEY)))
}

const FINISH_KEY: &[u8] = b"\"finish_reason\"";
const DONE: &[u8] = b"[DONE]";
const USAGE_KEY: &[u8] = b"\"usage\"";

/// Whether `events` hold `key` (found by `finder`) with a value that starts with `first`.
fn has_value(events: &[u8], finder: &Finder, key: &[u8], first: u8) -> bool {
    fn skip_ws(b: &[u8]) -> &[u8] {
        &b[b.iter().take_while(|c| c.is_ascii_whitespace()).count()..]
    }
    finder.find_iter(events).any(|at| {
        let rest = skip_ws(&events[at + key.len()..]);
        rest.first() == Some(&b':') && skip_ws(&rest[1..]).first() == Some(&first)
    })
}

/// Whether `events` hold a `"finish_reason"` with a string value (`null` until the end).
fn has_finish_reason(events: &[u8]) -> bool {
    has_value(events, &needles().0, FINISH_KEY, b'"')
}

/// Whether `events` hold a `"usage"` object (every chunk but the last carries `"usage":null`
/// when the client asked for `include_usage`).
fn has_usage_object(events: &[u8]) -> bool {
    has_value(events, &needles().2, USAGE_KEY, b'{')
}

/// In complete `events`, the closing brace of the chunk that carries the stream's usage at its
/// end, where the routing metadata goes: a top-level `usage` object with no choices (OpenAI's
/// last chunk when asked for `include_usage`) or on the finish chunk (as some providers send
/// it). One JSON object per data line, as OpenAI-compatible providers send them.
fn usage_chunk_brace(events: &[u8]) -> Option<usize> {
    #[derive(Deserialize)]
    struct UsageChunk<'a> {
        #[serde(borrow, default)]
        usage: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        choices: Option<Vec<FinishOnly>>,
    }
    #[derive(Deserialize)]
    struct FinishOnly {
        #[serde(default)]
        finish_reason: Option<String>,
    }
    let mut start = 0;
    while start < events.len() {
        let end =
            memchr::memchr2(b'\n', b'\r', &events[start..]).map_or(events.len(), |k| start + k);
        let line = &events[start..end];
        let object = line
            .strip_prefix(b"data:")
            .filter(|d| d.trim_ascii_start().first() == Some(&b'{'));
        // (A line too complex to parse is not the usage chunk.)
        if let Some(data) = object.filter(|d| !crate::chat_body::too_complex(d)) {
            if let Ok(c) = serde_json::from_slice::<UsageChunk>(data) {
                let usage = c.usage.is_some_and(|u| u.get() != "null");
                let last = c
                    .choices
                    .is_none_or(|c| c.is_empty() || c.iter().any(|c| c.finish_reason.is_some()));
                if usage && last {
                    return line.iter().rposition(|b| *b == b'}').map(|k| start + k);
                }
            }
        }
        start = end + 1;
    }
    None
}

/// Where the line `data: [DONE]` (or `data:[DONE]`) starts in complete `events`, if it does.
fn done_at(events: &[u8]) -> Option<usize> {
    needles().1.find_iter(events).find_map(|at| {
        let head = match events[..at].strip_suffix(b"data: ") {
            Some(h) => h,
            None => events[..at].strip_suffix(b"data:")?,
        };
        let line_start = head.is_empty() || matches!(head[head.len() - 1], b'\n' | b'\r');
        let line_end = matches!(events.get(at + DONE.len()), Some(b'\n' | b'\r'));
        (line_start && line_end).then_some(head.len())
    })
}

impl StreamTransform for PassThroughStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.progress == Progress::Pending {
            self.decoder.feed(chunk);
            while let Some(ev) = self.decoder.next_event() {
                self.judge(ev.event.as_deref(), &ev.data);
                if self.progress != Progress::Pending {
                    break;
                }
            }
        }
        let Some(end) = self.lines.last_end(chunk) else {
            self.held.extend_from_slice(chunk);
            if self.held.len() > sse::MAX_EVENT_BYTES {
                self.refuse_oversized(out);
            }
            return;
        };
        if self.held.is_empty() {
            // The usual case: the chunk is whole events; nothing is copied to be held.
            self.forward(&chunk[..end], out);
        } else {
            let mut events = std::mem::take(&mut self.held);
            events.extend_from_slice(&chunk[..end]);
            self.forward(&events, out);
            if !self.done {
                events.clear();
                self.held = events; // keeps its capacity
            }
        }
        if !self.done {
            self.held.extend_from_slice(&chunk[end..]);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>, upstream_error: Option<&FetchError>) {
        if self.done {
            return;
        }
        let mut cut = false;
        if upstream_error.is_none() && !self.held.iter().all(u8::is_ascii_whitespace) {
            if is_whole_event(&self.held) {
                // A last event without its blank line (some providers omit it): complete it.
                self.push(b"\n\n", out);
                if self.done {
                    return;
                }
            } else {
                // An event cut off by the end is not one (SSE does not dispatch it), and the
                // client's SDK would fail to parse it before reading our error event; a finish
                // seen before it does not make the stream whole (its usage chunk, say).
                self.held.clear();
                cut = true;
            }
        }
        if upstream_error.is_some() || !self.saw_finish || cut {
            let error = GatewayError::bad_gateway(format!(
                "The stream from the provider `{}` ended before completing.",
                self.provider
            ))
            .interrupted(upstream_error);
            self.fail(error, out);
            return;
        }
        self.close(out);
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn set_trailer(&mut self, trailer: Trailer, out: &mut Vec<u8>) {
        self.end.set_trailer(trailer, out);
    }

    fn closed(&self) -> bool {
        self.done
    }

    fn failure(&self) -> Option<&GatewayError> {
        self.end.failure()
    }

    fn chunk_identity(&self) -> (Option<&str>, Option<&str>, Option<u64>) {
        (self.id.as_deref(), self.model.as_deref(), self.created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::tests::decode_pieces;

    const STREAM: &str = "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";

    /// The failure the last progress reports (a test failure if it is none).
    fn failed(seen: &[Progress]) -> (&GatewayError, bool) {
        match seen.last().unwrap() {
            Progress::Failed { error, retryable } => (error, *retryable),
            p => panic!("{p:?}"),
        }
    }

    fn run(stream: &[u8], split: usize, cut: bool) -> (Vec<u8>, Vec<Progress>) {
        let mut t = PassThroughStream::new("openai");
        t.set_trailer(
            crate::formats::openai::Trailer::fixed(b"data: {\"trailer\":1}\n\n".to_vec()),
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for piece in stream.chunks(split.max(1)) {
            t.push(piece, &mut out);
            seen.push(t.progress().clone());
        }
        let err = FetchError::Network("reset".into());
        t.finish(&mut out, cut.then_some(&err));
        (out, seen)
    }

    #[test]
    fn passes_every_byte_through_with_the_trailer_before_done_at_any_split() {
        let expected = STREAM.replace("data: [DONE]", "data: {\"trailer\":1}\n\ndata: [DONE]");
        for split in 1..=STREAM.len() {
            let (out, _) = run(STREAM.as_bytes(), split, false);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "split {split}");
        }
    }

    #[test]
    fn each_event_goes_on_as_it_completes_with_any_line_ending_at_any_split() {
        for eol in ["\n", "\r\n", "\r"] {
            let stream = STREAM.replace('\n', eol);
            let trailer = format!("data: {{\"trailer\":1}}{eol}{eol}");
            let done = format!("data: [DONE]{eol}{eol}");
            let expected = stream.replace(&done, &format!("{trailer}data: [DONE]\n\n"));
            for split in 1..=stream.len() {
                let mut t = PassThroughStream::new("openai");
                t.set_trailer(
                    crate::formats::openai::Trailer::fixed(trailer.clone().into_bytes()),
                    &mut Vec::new(),
                );
                let mut out = Vec::new();
                for piece in stream.as_bytes().chunks(split) {
                    t.push(piece, &mut out);
                }
                t.finish(&mut out, None);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    expected,
                    "{eol:?} split {split}"
                );
            }
            // One event per push: each is sent on by its own push, nothing held back.
            let mut t = PassThroughStream::new("openai");
            let sep = format!("{eol}{eol}");
            for event in stream
                .split_inclusive(&sep)
                .filter(|e| !e.starts_with("data: [DONE]"))
            {
                let mut out = Vec::new();
                t.push(event.as_bytes(), &mut out);
                assert_eq!(String::from_utf8(out).unwrap(), event, "{eol:?}");
            }
        }
    }

    #[test]
    fn done_without_a_space_and_a_spaced_finish_reason_are_recognised() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\": \"stop\"}]}\n\ndata:[DONE]\n\n";
        let (out, _) = run(stream.as_bytes(), 7, false);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with("data: {\"trailer\":1}\n\ndata: [DONE]\n\n"),
            "{out}"
        );
        assert!(!out.contains("data:[DONE]"), "{out}");
        // Finished, then closed without [DONE]: not a cut.
        let finished = &stream[..stream.find("data:[DONE]").unwrap()];
        let (out, _) = run(finished.as_bytes(), 5, false);
        assert!(!String::from_utf8(out)
            .unwrap()
            .contains("stream_interrupted"));
        // `[DONE]` inside content is content.
        let quoted = "data: {\"choices\":[{\"delta\":{\"content\":\"data: [DONE]\"},\"finish_reason\":\"stop\"}]}\n\n";
        let (out, _) = run(quoted.as_bytes(), 3, false);
        assert!(String::from_utf8(out).unwrap().starts_with(quoted));
    }

    #[test]
    fn an_oversized_event_stops_the_stream_with_an_error_before_or_after_content() {
        let mib = vec![b'x'; 1 << 20];
        let content = &STREAM[..STREAM
            .find("data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},")
            .unwrap()];
        for (prefix, started) in [("", false), (content, true)] {
            let mut t = PassThroughStream::new("openai");
            t.set_trailer(
                crate::formats::openai::Trailer::fixed(b"data: {\"trailer\":1}\n\n".to_vec()),
                &mut Vec::new(),
            );
            let mut out = Vec::new();
            t.push(prefix.as_bytes(), &mut out);
            t.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"", &mut out);
            for _ in 0..=(crate::sse::MAX_EVENT_BYTES >> 20) {
                t.push(&mib, &mut out);
            }
            t.push(b"\"}}]}\n\ndata: [DONE]\n\n", &mut out);
            t.finish(&mut out, None);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(prefix));
            let tail = &text[prefix.len()..];
            // the trailer (the last chunk), the error, [DONE]; nothing of the oversized event
            let events = decode_pieces(&[tail.as_bytes()]);
            assert_eq!(events.len(), 3, "{}", &tail[..tail.len().min(300)]);
            assert_eq!(events[0].data, "{\"trailer\":1}");
            let err: serde_json::Value = serde_json::from_str(&events[1].data).unwrap();
            assert_eq!(err["error"]["code"], "stream_event_too_large");
            assert_eq!(err["error"]["provider"], "openai");
            assert!(events[2].is_done());
            match t.progress() {
                Progress::Failed { retryable, .. } => assert!(!started && *retryable),
                Progress::Content => assert!(started),
                p => panic!("{p:?}"),
            }
        }
    }

    #[test]
    fn content_starts_with_the_first_non_empty_delta_not_the_role_chunk() {
        let first = STREAM.find("\n\n").unwrap() + 2;
        let (_, seen) = run(&STREAM.as_bytes()[..first], first, false);
        assert_eq!(seen.last(), Some(&Progress::Pending));
        let second = first + STREAM[first..].find("\n\n").unwrap() + 2;
        let (_, seen) = run(&STREAM.as_bytes()[..second], second, false);
        assert_eq!(seen.last(), Some(&Progress::Content));
    }

    /// Usage on the finish chunk (as some providers send it) carries the metadata too; a line
    /// that is not a JSON object never does.
    #[test]
    fn usage_on_the_finish_chunk_carries_the_metadata_and_arrays_never_do() {
        let finish = r#"data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":5}}"#;
        let brace = usage_chunk_brace(finish.as_bytes()).unwrap();
        assert_eq!(brace, finish.len() - 1);
        let content = r#"data: {"id":"c1","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}],"usage":{"total_tokens":5}}"#;
        assert_eq!(
            usage_chunk_brace(content.as_bytes()),
            None,
            "usage mid-stream"
        );
        assert_eq!(
            usage_chunk_brace(br#"data: [{"usage":{"total_tokens":5}}]"#),
            None
        );
    }

    #[test]
    fn only_usage_objects_are_looked_at() {
        assert!(!has_usage_object(br#"data: {"choices":[],"usage":null}"#));
        assert!(has_usage_object(
            br#"data: {"choices":[],"usage": {"total_tokens":1}}"#
        ));
        assert!(!has_usage_object(
            br#"data: {"choices":[{"delta":{"content":"usage"}}]}"#
        ));
    }

    /// With a usage chunk (the last, `choices: []`), the routing metadata rides in it: no
    /// extra chunk, its bytes otherwise as sent, at any split, also when the whole stream came
    /// before the metadata was known. Without one, a routing chunk of its own comes last.
    #[test]
    fn the_routing_metadata_rides_in_the_usage_chunk() {
        let usage_chunk = r#"data: {"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
        let with_usage = STREAM.replace("data: [DONE]", &format!("{usage_chunk}\n\ndata: [DONE]"));
        let trailer = || Trailer::new("gen_1", "openai/m", 1, br#"{"g":1}"#);
        for early in [false, true] {
            for split in [1, 7, with_usage.len()] {
                let mut t = PassThroughStream::new("openai");
                let mut out = Vec::new();
                if early {
                    t = t.awaiting_trailer();
                } else {
                    t.set_trailer(trailer(), &mut out);
                }
                for piece in with_usage.as_bytes().chunks(split) {
                    t.push(piece, &mut out);
                }
                t.finish(&mut out, None);
                if early {
                    t.set_trailer(trailer(), &mut out);
                }
                let expected = with_usage.replace(
                    r#""total_tokens":12}}"#,
                    r#""total_tokens":12},"providerMetadata":{"g":1}}"#,
                );
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    expected,
                    "split {split}, early {early}"
                );
            }
        }
        // No usage chunk: the routing chunk, usage null.
        let mut t = PassThroughStream::new("openai");
        let mut out = Vec::new();
        t.set_trailer(trailer(), &mut out);
        t.push(STREAM.as_bytes(), &mut out);
        t.finish(&mut out, None);
        let events = decode_pieces(&[&out]);
        let n = events.len();
        let last: serde_json::Value = serde_json::from_str(&events[n - 2].data).unwrap();
        assert_eq!(last["providerMetadata"], serde_json::json!({"g": 1}));
        assert!(last["usage"].is_null());
        assert_eq!(last["choices"][0]["delta"], serde_json::json!({}));
    }

    #[test]
    fn reasoning_given_back_is_taken_out_for_openai_compatible_providers() {
        assert_eq!(
            without_fields_not_sent(
                "groq",
                br#"{"model":"m","messages":[{"role":"user","content":"say \"reasoning\""}]}"#
            ),
            None
        );
        // Everything else byte for byte: key order (a schema's properties), numbers no tree
        // would keep, messages that are not objects.
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"a","reasoning_details":[{"type":"reasoning.text","text":"r","signature":"s"}],"reasoning":"r","refusal":null,"annotations":[]},{"role":"assistant","content":"b","reasoning":"r2"},7],"response_format":{"type":"json_schema","json_schema":{"schema":{"properties":{"steps":{},"answer":{}}}}},"seed":1e400,"n":123456789012345678901234567890}"#;
        let rest = r#"],"response_format":{"type":"json_schema","json_schema":{"schema":{"properties":{"steps":{},"answer":{}}}}},"seed":1e400,"n":123456789012345678901234567890}"#;
        for provider in ["openai", "groq", "xai", "deepseek", "cerebras"] {
            assert_eq!(
                String::from_utf8(without_fields_not_sent(provider, body).unwrap()).unwrap(),
                format!(
                    r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":"a","refusal":null,"annotations":[]}},{{"role":"assistant","content":"b"}},7{rest}"#
                ),
                "{provider}"
            );
        }
        // Mistral refuses any field its schema lacks, also OpenAI's own answer fields.
        assert_eq!(
            String::from_utf8(without_fields_not_sent("mistral", body).unwrap()).unwrap(),
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":"a"}},{{"role":"assistant","content":"b"}},7{rest}"#
            )
        );
        let openai_answer_given_back = br#"{"model":"m","messages":[{"role":"assistant","content":"a","refusal":null,"annotations":[]}]}"#;
        assert_eq!(
            without_fields_not_sent("openai", openai_answer_given_back),
            None
        );
        assert_eq!(
            String::from_utf8(
                without_fields_not_sent("mistral", openai_answer_given_back).unwrap()
            )
            .unwrap(),
            r#"{"model":"m","messages":[{"role":"assistant","content":"a"}]}"#
        );
    }

    #[test]
    fn a_stream_gone_quiet_after_content_ends_as_timed_out_naming_the_setting() {
        let at = STREAM.find("finish_reason\":\"stop").unwrap();
        // (whole events only: the idle timer fires between reads)
        let started = &STREAM.as_bytes()[..STREAM[..at].rfind("\n\n").unwrap() + 2];
        let mut t = PassThroughStream::new("openai");
        let mut out = Vec::new();
        t.push(started, &mut out);
        t.finish(&mut out, Some(&FetchError::Timeout));
        let events = decode_pieces(&[&out]);
        assert!(events.last().unwrap().is_done());
        let err: serde_json::Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
        assert_eq!(err["error"]["code"], "stream_interrupted", "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("STREAM_IDLE_TIMEOUT_MS"), "{message}");
    }

    #[test]
    fn a_cut_stream_ends_with_the_trailer_an_error_event_then_done() {
        let cut = &STREAM.as_bytes()[..STREAM.find("finish_reason\":\"stop").unwrap()];
        let (out, _) = run(cut, 10, true);
        let events = decode_pieces(&[&out]);
        let n = events.len();
        assert!(events[n - 1].is_done());
        assert_eq!(events[n - 3].data, "{\"trailer\":1}");
        let err: serde_json::Value = serde_json::from_str(&events[n - 2].data).unwrap();
        assert_eq!(err["error"]["code"], "stream_interrupted");
        assert_eq!(err["error"]["provider"], "openai");
        // a clean close without finish or [DONE] is a cut too
        let (out, _) = run(cut, 10, false);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("stream_interrupted"));
        // Cut inside an event: the fragment is not sent (every event the client gets parses),
        // whether the connection broke or closed cleanly.
        for broke in [true, false] {
            let (out, _) = run(cut, 10, broke);
            let events = decode_pieces(&[&out]);
            for e in &events {
                assert!(
                    e.is_done() || serde_json::from_str::<serde_json::Value>(&e.data).is_ok(),
                    "broke {broke}: {:?}",
                    e.data
                );
            }
            assert!(events[events.len() - 2].data.contains("stream_interrupted"));
        }
        // A fragment after the finish chunk (the usage chunk, cut) is a cut too, not a silent end.
        let finished = format!(
            "{}data: {{\"choices\":[],\"usage\":{{\"prompt_tok",
            &STREAM[..STREAM.find("data: [DONE]").unwrap()]
        );
        let (out, _) = run(finished.as_bytes(), 10, false);
        let events = decode_pieces(&[&out]);
        assert!(
            events[events.len() - 2].data.contains("stream_interrupted"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        // A last comment or ping without its blank line after the finish is no cut.
        for tail in [": keep-alive", "event: ping", "id: 7", "  \t"] {
            let stream = format!("{}{tail}", &STREAM[..STREAM.find("data: [DONE]").unwrap()]);
            let (out, _) = run(stream.as_bytes(), 10, false);
            let out = String::from_utf8_lossy(&out);
            assert!(!out.contains("stream_interrupted"), "{tail}: {out}");
        }
        // Cut inside a field name after the finish: a cut.
        for tail in ["dat", "da"] {
            let stream = format!("{}{tail}", &STREAM[..STREAM.find("data: [DONE]").unwrap()]);
            let (out, _) = run(stream.as_bytes(), 10, false);
            let out = String::from_utf8_lossy(&out);
            assert!(out.contains("stream_interrupted"), "{tail}: {out}");
        }
        // A whole last event without its blank line is still delivered, before the cut's error.
        let whole = &STREAM.as_bytes()[..STREAM
            .find("\n\ndata: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},")
            .unwrap()];
        let (out, _) = run(whole, 10, false);
        let events = decode_pieces(&[&out]);
        assert_eq!(events.len(), 5, "{:?}", String::from_utf8_lossy(&out));
        assert!(events[1].data.contains("Hello"));
    }

    #[test]
    fn an_error_before_content_is_a_failure_to_fall_back_from() {
        let s =
            b"data: {\"error\":{\"message\":\"overloaded\",\"code\":\"server_overloaded\"}}\n\n";
        let (_, seen) = run(s, s.len(), false);
        let (error, retryable) = failed(&seen);
        assert!(retryable);
        assert_eq!(error.message, "overloaded");
        let s = b"data: {\"error\":{\"message\":\"bad input\",\"code\":\"invalid_prompt\"}}\n\n";
        let (_, seen) = run(s, s.len(), false);
        assert!(matches!(
            seen.last().unwrap(),
            Progress::Failed {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn an_error_event_without_an_error_field_and_numeric_delta_fields_are_judged_right() {
        let s =
            b"event: error\ndata: {\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}\n\n";
        let (_, seen) = run(s, s.len(), false);
        let (error, retryable) = failed(&seen);
        assert!(retryable);
        assert_eq!(error.message, "Overloaded");
        // Odd identity fields do not stop a chunk being judged.
        let odd = b"data: {\"id\":7,\"created\":1718000000.5,\"model\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
        let (_, seen) = run(odd, odd.len(), false);
        assert_eq!(seen.last(), Some(&Progress::Content));
        // Together: a role chunk with its token id is not content yet; the text is.
        let role = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"token_id\":128000,\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":null}}]}\n\n";
        let (_, seen) = run(role, role.len(), false);
        assert_eq!(seen.last(), Some(&Progress::Pending));
        let text = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"token_id\":9906,\"content\":\"Hi\"}}]}\n\n";
        let (_, seen) = run(text, text.len(), false);
        assert_eq!(seen.last(), Some(&Progress::Content));
    }

    #[test]
    fn an_event_too_complex_to_parse_before_content_fails_the_attempt() {
        let zeros = vec!["0"; 200_000].join(",");
        let s = format!("data: {{\"choices\":[],\"x\":[{zeros}]}}\n\n");
        let (_, seen) = run(s.as_bytes(), 4096, false);
        assert!(
            seen.iter().any(|p| matches!(
                p,
                Progress::Failed {
                    retryable: true,
                    ..
                }
            )),
            "{:?}",
            seen.last()
        );
    }

    #[test]
    fn errors_in_a_stream_are_judged_by_what_they_say_of_their_cause() {
        // (error object, status it stands for, another attempt may serve)
        let cases: &[(&str, u16, bool)] = &[
            // OpenRouter's mid-stream errors carry the HTTP status as a number
            (
                r#"{"code":502,"message":"Provider returned error"}"#,
                502,
                true,
            ),
            (r#"{"code":400,"message":"bad"}"#, 400, false),
            // vLLM / sglang
            (
                r#"{"object":"error","message":"x","type":"InternalServerError","code":500}"#,
                500,
                true,
            ),
            (
                r#"{"message":"x","type":"Internal_Server_Error"}"#,
                503,
                true,
            ),
            // a bare string (Groq), an empty object: no cause named, the provider's
            (r#""Service unavailable""#, 503, true),
            (r#"{}"#, 503, true),
            (
                r#"{"message":"slow down","code":"Rate_Limit_Exceeded"}"#,
                429,
                true,
            ),
            (
                r#"{"message":"x","type":"invalid_request_error","code":null}"#,
                400,
                false,
            ),
            (
                r#"{"message":"x","type":"invalid_request_error","code":"context_length_exceeded"}"#,
                400,
                false,
            ),
            (r#"{"message":"x","code":"tool_use_failed"}"#, 400, false),
            (r#"{"message":"x","status":429}"#, 429, true),
            // an out-of-range number does not hide a valid one
            (r#"{"code":1001,"status":400,"message":"x"}"#, 400, false),
            // the gateway's credential refused: handled as the provider's 401 / 403
            (r#"{"code":401,"message":"bad key"}"#, 401, false),
            (
                r#"{"code":"invalid_api_key","message":"bad key"}"#,
                401,
                false,
            ),
            (r#"{"type":"permission_error","message":"no"}"#, 403, false),
        ];
        for (err, status, retryable) in cases {
            let s = format!("data: {{\"error\":{err}}}\n\n");
            let (_, seen) = run(s.as_bytes(), s.len(), false);
            let (error, r) = failed(&seen);
            assert_eq!((error.status, r), (*status, *retryable), "{err}");
        }
    }

    #[test]
    fn an_empty_stream_ending_cleanly_with_done_is_content() {
        let (out, seen) = run(b"data: [DONE]\n\n", 100, false);
        assert_eq!(seen.last(), Some(&Progress::Content));
        assert!(out.ends_with(b"data: [DONE]\n\n"));
    }
}

/// Golden tests over real recorded streams (tests/fixtures/openai/SOURCES.md).
#[cfg(test)]
mod golden {
    use super::*;
    use crate::sse::tests::decode_pieces;
    use serde_json::Value;

    const FIXTURES: &[(&str, &str)] = &[
        (
            "openai-text",
            include_str!("../../tests/fixtures/openai/openai-text.sse"),
        ),
        (
            "xai-text",
            include_str!("../../tests/fixtures/openai/xai-text.sse"),
        ),
        (
            "xai-tool-call",
            include_str!("../../tests/fixtures/openai/xai-tool-call.sse"),
        ),
    ];
    const TRAILER: &[u8] = b"data: {\"trailer\":true}\n\n";

    /// The fixture through the pass-through transform, fed in `pieces`.
    fn pass(pieces: &[&[u8]]) -> Vec<u8> {
        let mut t = PassThroughStream::new("openai");
        t.set_trailer(
            crate::formats::openai::Trailer::fixed(TRAILER.to_vec()),
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        for p in pieces {
            t.push(p, &mut out);
        }
        t.finish(&mut out, None);
        out
    }

    fn chunks(events: &[crate::sse::SseEvent]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| !e.is_done())
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    #[test]
    fn every_byte_boundary_decodes_the_same() {
        for (name, stream) in FIXTURES {
            let bytes = stream.as_bytes();
            let whole = decode_pieces(&[bytes]);
            assert!(whole.last().unwrap().is_done(), "{name}");
            let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(decode_pieces(&one_by_one), whole, "{name}: byte by byte");
            // Every two-piece split of the stream's first events (the whole file would be
            // quadratic; byte-by-byte above already puts a boundary at every byte).
            let head_end = bytes[..4096.min(bytes.len())]
                .windows(2)
                .rposition(|w| w == b"\n\n")
                .unwrap()
                + 2;
            let head = &bytes[..head_end];
            let head_events = decode_pieces(&[head]);
            for i in 0..=head.len() {
                let (a, b) = head.split_at(i);
                assert_eq!(decode_pieces(&[a, b]), head_events, "{name}: split at {i}");
            }
        }
    }

    #[test]
    fn pass_through_keeps_every_byte_and_adds_only_the_trailer_at_any_split() {
        for (name, stream) in FIXTURES {
            let bytes = stream.as_bytes();
            let done = bytes.len() - crate::sse::DONE.len();
            let expected = [&bytes[..done], TRAILER, crate::sse::DONE].concat();
            assert_eq!(pass(&[bytes]), expected, "{name}: whole");
            let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(pass(&one_by_one), expected, "{name}: byte by byte");
            for size in [2, 3, 7, 64, 1000] {
                let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
                assert_eq!(pass(&pieces), expected, "{name}: pieces of {size}");
            }
        }
    }

    #[test]
    fn recorded_content_is_what_a_client_assembles() {
        let text = |name: &str, field: &str| -> String {
            let (_, s) = FIXTURES.iter().find(|(n, _)| *n == name).unwrap();
            chunks(&decode_pieces(&[&pass(&[s.as_bytes()])]))
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][field].as_str().map(str::to_owned))
                .collect()
        };
        let openai = text("openai-text", "content");
        assert!(
            openai.starts_with("**Holiday Name:** Harmony Day"),
            "{openai}"
        );
        assert!(text("xai-text", "reasoning_content").len() > 100);
        assert!(!text("xai-text", "content").is_empty());
        // the tool call's arguments, as the client gets them through the gateway, parse as JSON
        let (_, s) = FIXTURES[2];
        let all = chunks(&decode_pieces(&[&pass(&[s.as_bytes()])]));
        let args: String = all
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        let parsed: Value = serde_json::from_str(&args).unwrap();
        assert!(parsed.is_object(), "{args}");
        assert!(all
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    }

    #[test]
    fn content_is_detected_at_the_first_real_delta() {
        for (name, stream) in FIXTURES {
            let mut t = PassThroughStream::new("openai");
            let mut out = Vec::new();
            let events: Vec<&str> = stream.split_inclusive("\n\n").collect();
            let mut committed_at = None;
            for (i, ev) in events.iter().enumerate() {
                t.push(ev.as_bytes(), &mut out);
                if t.progress() == &Progress::Content {
                    committed_at = Some(i);
                    break;
                }
            }
            let i = committed_at.unwrap_or_else(|| panic!("{name}: never committed"));
            assert!(
                i <= 1,
                "{name}: committed at event {i}, the first content is at 0 or 1"
            );
        }
    }
}

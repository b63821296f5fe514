//! The translated providers behind one interface: Anthropic, Gemini, and Vertex AI (which serves
//! both). The pipeline calls these; each protocol module stays a set of pure functions.

use super::{anthropic, gemini, vertex, Protocol};
use crate::canonical::{ChatRequest, ChatResponse, StreamPart};
use crate::error::GatewayError;
use crate::formats::openai::ChunkEncoder;
use crate::platform::{FetchError, Progress, StreamTransform};
use crate::routing::AttemptOutcome;
use crate::sse::SseDecoder;

/// A protocol the gateway translates to and from OpenAI chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Native {
    Anthropic,
    Gemini,
    Vertex(vertex::Publisher),
}

/// The 400 for an assistant turn's `audio` (a reference to an earlier audio answer, which only
/// OpenAI keeps).
pub(crate) fn audio_reference_refused(i: usize, provider: &str) -> GatewayError {
    let param = format!("messages[{i}].audio");
    GatewayError::invalid_param(
        &param,
        format!("`{param}` refers to an earlier OpenAI audio answer; {provider} cannot take it."),
    )
}

impl Native {
    /// The translated protocol for `protocol` and a native model id; `None` for OpenAI-compatible.
    pub fn of(protocol: Protocol, native_model: &str) -> Option<Native> {
        match protocol {
            Protocol::OpenAiCompat => None,
            Protocol::Anthropic => Some(Native::Anthropic),
            Protocol::Gemini => Some(Native::Gemini),
            Protocol::Vertex => Some(Native::Vertex(vertex::publisher_for(native_model))),
        }
    }

    /// The URL to call under `base` (for Vertex, the project/location base).
    pub fn endpoint(self, base: &str, native_model: &str, stream: bool) -> String {
        match self {
            Native::Anthropic => anthropic::endpoint(base, native_model, stream),
            Native::Gemini => gemini::endpoint(base, native_model, stream),
            Native::Vertex(_) => vertex::endpoint(base, native_model, stream),
        }
    }

    /// Auth and content headers, from an API key (or, for Vertex, an OAuth access token).
    pub fn auth_headers(self, credential: &str) -> Vec<(&'static str, String)> {
        match self {
            Native::Anthropic => anthropic::auth_headers(credential),
            Native::Gemini => gemini::auth_headers(credential),
            Native::Vertex(_) => vertex::auth_headers(credential),
        }
    }

    /// Whether its translation parses tool results as JSON (Gemini's `functionResponse` takes
    /// an object; Anthropic takes the text as it is).
    pub fn parses_tool_results(self) -> bool {
        matches!(
            self,
            Native::Gemini | Native::Vertex(vertex::Publisher::Google)
        )
    }

    /// `vertex_structured_outputs`: `VERTEX_STRUCTURED_OUTPUTS` (see [`vertex::build_request`]).
    pub fn build_request(
        self,
        req: &ChatRequest,
        native_model: &str,
        vertex_structured_outputs: bool,
    ) -> Result<Vec<u8>, GatewayError> {
        match self {
            Native::Anthropic => anthropic::build_request(req, native_model),
            Native::Gemini => gemini::build_request(req, native_model),
            Native::Vertex(_) => {
                vertex::build_request(req, native_model, vertex_structured_outputs)
            }
        }
    }

    pub fn translate_response(self, body: &[u8]) -> Result<ChatResponse, GatewayError> {
        match self {
            Native::Anthropic => anthropic::translate_response(body),
            Native::Gemini => gemini::translate_response(body),
            Native::Vertex(p) => vertex::translate_response(p, body),
        }
    }

    pub fn translate_error(
        self,
        status: u16,
        retry_after: Option<String>,
        body: &[u8],
    ) -> GatewayError {
        match self {
            Native::Anthropic => anthropic::translate_error(status, retry_after, body),
            Native::Gemini => gemini::translate_error(status, retry_after, body),
            Native::Vertex(p) => vertex::translate_error(p, status, retry_after, body),
        }
    }

    fn stream_translator(self) -> vertex::StreamTranslator {
        match self {
            Native::Anthropic => {
                vertex::StreamTranslator::Anthropic(anthropic::StreamTranslator::new())
            }
            Native::Gemini => vertex::StreamTranslator::Google(gemini::StreamTranslator::new()),
            Native::Vertex(p) => vertex::StreamTranslator::new(p),
        }
    }
}

/// A provider's event stream rewritten as OpenAI chunks: the one SSE decoder, the provider's
/// translator, the one OpenAI encoder. Fed whatever byte pieces the network delivers.
pub struct TranslatedStream {
    decoder: SseDecoder,
    translator: vertex::StreamTranslator,
    encoder: ChunkEncoder,
    parts: Vec<StreamPart>,
    progress: Progress,
}

impl TranslatedStream {
    pub fn new(native: Native, encoder: ChunkEncoder) -> Self {
        TranslatedStream {
            decoder: SseDecoder::new(),
            translator: native.stream_translator(),
            encoder,
            parts: Vec::with_capacity(4),
            progress: Progress::Pending,
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        for part in self.parts.drain(..) {
            if self.progress == Progress::Pending {
                match &part {
                    StreamPart::Start { .. } | StreamPart::Usage(_) => {}
                    StreamPart::Error(e) => {
                        let retryable = AttemptOutcome::Status(e.status).is_retryable();
                        self.progress = Progress::Failed {
                            error: e.clone(),
                            retryable,
                        };
                    }
                    _ => self.progress = Progress::Content,
                }
            }
            self.encoder.encode(part, out);
        }
    }
}

impl StreamTransform for TranslatedStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.closed() {
            return;
        }
        self.decoder.feed(chunk);
        while let Some(ev) = self.decoder.next_event() {
            if crate::chat_body::too_complex(ev.data.as_bytes()) {
                self.parts
                    .push(StreamPart::Error(crate::chat_body::too_complex_error(
                        "a stream event",
                    )));
            } else {
                self.translator.on_event(&ev, &mut self.parts);
            }
            self.flush(out);
            if self.translator.ended() {
                // The provider said it is over: the client's stream ends now (its usage,
                // routing and `[DONE]`), not when the provider's connection closes.
                self.encoder.finish(out);
            }
            if self.closed() {
                return;
            }
        }
        if !self.closed() && self.decoder.too_large() {
            self.parts
                .push(StreamPart::Error(crate::sse::oversized_event_error()));
            self.flush(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>, upstream_error: Option<&FetchError>) {
        if self.closed() {
            return;
        }
        if upstream_error.is_none() {
            while let Some(ev) = self.decoder.finish() {
                // A last event without its blank line is read if it is whole; one the end cut
                // off is not an event (the stream was cut: the translator reports it below).
                if serde_json::from_str::<serde::de::IgnoredAny>(&ev.data).is_err() {
                    break;
                }
                if crate::chat_body::too_complex(ev.data.as_bytes()) {
                    self.parts
                        .push(StreamPart::Error(crate::chat_body::too_complex_error(
                            "a stream event",
                        )));
                    break;
                }
                self.translator.on_event(&ev, &mut self.parts);
            }
        }
        // A stream cut short makes the translator report an error part; never a fake finish.
        let from = self.parts.len();
        self.translator.finish(&mut self.parts);
        for part in &mut self.parts[from..] {
            if let StreamPart::Error(e) = part {
                *e = e.clone().interrupted(upstream_error);
            }
        }
        self.flush(out);
        self.encoder.finish(out);
    }

    fn progress(&self) -> &Progress {
        &self.progress
    }

    fn set_trailer(&mut self, trailer: crate::formats::openai::Trailer, out: &mut Vec<u8>) {
        self.encoder.set_trailer(trailer, out);
    }

    /// An error event or the end has been written: `[DONE]` is out.
    fn closed(&self) -> bool {
        self.encoder.is_done()
    }

    fn failure(&self) -> Option<&GatewayError> {
        self.encoder.failure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::tests::decode_pieces;

    fn run(native: Native, stream: &[u8], pieces: usize, cut: bool) -> Vec<serde_json::Value> {
        let mut t =
            TranslatedStream::new(native, ChunkEncoder::new("gen_x", "anthropic/m", 1, true));
        let mut out = Vec::new();
        let size = stream.len().div_ceil(pieces).max(1);
        for piece in stream.chunks(size) {
            t.push(piece, &mut out);
        }
        let err = FetchError::Network("reset".into());
        t.finish(&mut out, cut.then_some(&err));
        decode_pieces(&[&out])
            .into_iter()
            .map(|e| serde_json::from_str(&e.data).unwrap_or(serde_json::Value::String(e.data)))
            .collect()
    }

    const ANTHROPIC: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi there\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn an_event_too_complex_to_parse_ends_the_stream_with_an_error() {
        let zeros = vec!["0"; 200_000].join(",");
        let mut start = ANTHROPIC[..ANTHROPIC.len() / 2].to_vec();
        let cut = start.iter().rposition(|b| *b == b'\n').unwrap() + 1;
        start.truncate(cut);
        let ping = format!("event: ping\ndata: {{\"type\":\"ping\",\"x\":[{zeros}]}}");
        // With its blank line, and as the stream's last event without it.
        for end in ["\n\n", ""] {
            let mut stream = start.clone();
            stream.extend_from_slice(format!("{ping}{end}").as_bytes());
            let out = run(Native::Anthropic, &stream, 3, false);
            let n = out.len();
            assert_eq!(out[n - 1], "[DONE]");
            assert!(
                out[n - 2]["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("JSON values")),
                "{end:?}: {:?}",
                out[n - 2]
            );
        }
    }

    #[test]
    fn an_anthropic_stream_becomes_openai_chunks_however_it_is_split() {
        let whole = run(Native::Anthropic, ANTHROPIC, 1, false);
        for pieces in [2, 7, 50, ANTHROPIC.len()] {
            assert_eq!(
                run(Native::Anthropic, ANTHROPIC, pieces, false),
                whole,
                "{pieces} pieces"
            );
        }
        let text: String = whole
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hi there");
        assert!(whole
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));
        let usage = whole.iter().find(|c| c["usage"].is_object()).unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 10);
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        assert_eq!(whole.last().unwrap(), "[DONE]");
        assert!(whole
            .iter()
            .all(|c| c == "[DONE]" || c["model"] == "anthropic/m"));
    }

    #[test]
    fn a_stream_cut_or_gone_quiet_after_content_ends_with_stream_interrupted() {
        let content_end = first_content_end();
        let ends = |upstream: Option<&FetchError>, stream: &[u8]| {
            let mut t = TranslatedStream::new(
                Native::Anthropic,
                ChunkEncoder::new("gen_x", "anthropic/m", 1, true),
            );
            let mut out = Vec::new();
            t.push(stream, &mut out);
            t.finish(&mut out, upstream);
            let events = decode_pieces(&[&out]);
            assert_eq!(events.last().unwrap().data, "[DONE]");
            serde_json::from_str::<serde_json::Value>(&events[events.len() - 2].data).unwrap()
        };
        let started = &ANTHROPIC[..content_end];
        // Cut (network, or a plain end before message_stop): one code for every protocol.
        for cut in [Some(&FetchError::Network("reset".into())), None] {
            let e = ends(cut, started);
            assert_eq!(e["error"]["code"], "stream_interrupted", "{cut:?}: {e}");
            assert_eq!(e["error"]["type"], "server_error", "{e}");
            assert!(
                !e["error"]["message"].as_str().unwrap().contains("idle"),
                "{e}"
            );
        }
        // Gone quiet (the edge's idle timer): a timeout that says which setting cut it.
        let e = ends(Some(&FetchError::Timeout), started);
        assert_eq!(e["error"]["code"], "stream_interrupted", "{e}");
        assert_eq!(e["error"]["type"], "server_error", "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("message_stop") && message.contains("STREAM_IDLE_TIMEOUT_MS"),
            "{message}"
        );
        // A clean end inside an event is a cut too (the fragment is not an event).
        let inside = &ANTHROPIC[..content_end + 30];
        let e = ends(None, inside);
        assert_eq!(e["error"]["code"], "stream_interrupted", "{e}");
        // A Gemini stream whose finish came before the provider went quiet (the connection
        // still open) ends cleanly: the answer was whole.
        let gemini = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":1,\"totalTokenCount\":4}}\r\n\r\n";
        let mut t = TranslatedStream::new(
            Native::Gemini,
            ChunkEncoder::new("gen_x", "google/m", 1, true),
        );
        let mut out = Vec::new();
        t.push(gemini, &mut out);
        assert!(!t.closed(), "Gemini's end is the end of its stream");
        t.finish(&mut out, Some(&FetchError::Timeout));
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains("error") && text.contains("\"finish_reason\":\"stop\""),
            "{text}"
        );
    }

    /// The end of `ANTHROPIC`'s first content event (its text delta).
    fn first_content_end() -> usize {
        let at = ANTHROPIC.windows(4).position(|w| w == b"Hi t").unwrap();
        at + ANTHROPIC[at..]
            .windows(2)
            .position(|w| w == b"\n\n")
            .unwrap()
            + 2
    }

    #[test]
    fn an_oversized_event_ends_the_stream_with_the_trailer_an_error_and_done() {
        let content_end = first_content_end();
        let mib = vec![b'x'; 1 << 20];
        for (prefix, started) in [(&ANTHROPIC[..0], false), (&ANTHROPIC[..content_end], true)] {
            let mut t = TranslatedStream::new(
                Native::Anthropic,
                ChunkEncoder::new("gen_x", "anthropic/m", 1, true),
            );
            let mut out = Vec::new();
            t.push(prefix, &mut out);
            if started {
                // as the pipeline does, once content has started
                t.set_trailer(
                    crate::formats::openai::Trailer::fixed(b"data: {\"trailer\":1}\n\n".to_vec()),
                    &mut Vec::new(),
                );
            }
            t.push(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"", &mut out);
            for _ in 0..=(crate::sse::MAX_EVENT_BYTES >> 20) {
                t.push(&mib, &mut out);
            }
            t.push(b"\"}}\n\n", &mut out);
            t.finish(&mut out, None);
            let events = decode_pieces(&[&out]);
            let n = events.len();
            assert_eq!(events[n - 1].data, "[DONE]");
            let err: serde_json::Value = serde_json::from_str(&events[n - 2].data).unwrap();
            assert_eq!(err["error"]["code"], "stream_event_too_large");
            // once content had started, the routing trailer is the last chunk
            assert_eq!(
                events.iter().position(|e| e.data == "{\"trailer\":1}"),
                started.then(|| n - 3)
            );
            assert_eq!(events.iter().filter(|e| e.is_done()).count(), 1);
            match t.progress() {
                Progress::Failed { retryable, .. } => assert!(!started && *retryable),
                Progress::Content => assert!(started),
                p => panic!("{p:?}"),
            }
        }
    }

    #[test]
    fn a_cut_stream_ends_in_an_error_event_not_a_finish() {
        let mut t = TranslatedStream::new(Native::Anthropic, ChunkEncoder::new("g", "m", 1, false));
        let mut out = Vec::new();
        t.push(&ANTHROPIC[..ANTHROPIC.len() / 2], &mut out);
        t.finish(&mut out, None);
        assert!(
            t.closed() && !t.drain_provider(),
            "a failed stream's provider is let go"
        );
        let cut = &ANTHROPIC[..ANTHROPIC.len() / 2];
        let chunks = run(Native::Anthropic, cut, 3, true);
        assert!(
            chunks.iter().any(|c| c["error"]["message"].is_string()),
            "{chunks:?}"
        );
        assert!(!chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop"));
        assert_eq!(chunks.last().unwrap(), "[DONE]");
    }

    #[test]
    fn progress_is_pending_until_content_and_the_trailer_precedes_done() {
        let encoder = ChunkEncoder::new("g", "m", 1, false).awaiting_trailer();
        let mut t = TranslatedStream::new(Native::Anthropic, encoder);
        let mut out = Vec::new();
        let start = ANTHROPIC.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        t.push(&ANTHROPIC[..start], &mut out);
        assert_eq!(
            t.progress(),
            &Progress::Pending,
            "message_start is not content"
        );
        t.push(&ANTHROPIC[start..], &mut out);
        assert_eq!(t.progress(), &Progress::Content);
        // message_stop ended the client's stream, its end held for the trailer.
        assert!(t.closed());
        assert!(!out.ends_with(b"data: [DONE]\n\n"));
        t.set_trailer(
            crate::formats::openai::Trailer::fixed(b"data: {\"t\":1}\n\n".to_vec()),
            &mut out,
        );
        t.finish(&mut out, None);
        assert!(out.ends_with(b"data: {\"t\":1}\n\ndata: [DONE]\n\n"));
    }

    #[test]
    fn message_stop_ends_the_client_stream_without_waiting_for_the_connection_to_close() {
        for native in [
            Native::Anthropic,
            Native::Vertex(crate::providers::vertex::Publisher::Anthropic),
        ] {
            let mut t = TranslatedStream::new(native, ChunkEncoder::new("g", "m", 1, false));
            let mut out = Vec::new();
            t.push(ANTHROPIC, &mut out);
            assert!(t.closed(), "{native:?}");
            assert!(
                t.drain_provider(),
                "ended well: its connection is worth keeping"
            );
            assert!(out.ends_with(b"data: [DONE]\n\n"));
            // (What the provider might still send is not read.)
            let before = out.len();
            t.push(b": keep-alive\n\n", &mut out);
            t.finish(&mut out, None);
            assert_eq!(out.len(), before);
        }
        // Gemini says it is over only by closing: usage may follow the finish reason.
        let mut t = TranslatedStream::new(Native::Gemini, ChunkEncoder::new("g", "m", 1, false));
        let mut out = Vec::new();
        t.push(
            b"data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"Hi\"}]},\"finishReason\":\"STOP\"}]}\r\n\r\n",
            &mut out,
        );
        assert!(!t.closed());
        t.finish(&mut out, None);
        assert!(t.closed() && out.ends_with(b"data: [DONE]\n\n"));
    }

    #[test]
    fn a_provider_error_after_content_ends_the_stream_after_the_trailer() {
        let mut t = TranslatedStream::new(Native::Anthropic, ChunkEncoder::new("g", "m", 1, false));
        let mut out = Vec::new();
        let content_end = first_content_end();
        t.push(&ANTHROPIC[..content_end], &mut out);
        assert_eq!(t.progress(), &Progress::Content);
        assert!(!t.closed());
        t.set_trailer(
            crate::formats::openai::Trailer::fixed(b"data: {\"t\":1}\n\n".to_vec()),
            &mut Vec::new(),
        );
        t.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", &mut out);
        assert!(t.closed(), "the client's stream is complete");
        let events = decode_pieces(&[&out]);
        let n = events.len();
        assert!(events[n - 1].is_done());
        assert!(
            events[n - 2].data.contains("Overloaded"),
            "the error right before [DONE]"
        );
        assert_eq!(
            events[n - 3].data,
            "{\"t\":1}",
            "the routing trailer, the last chunk"
        );
        // Whatever the provider sends after that, and its end, add nothing.
        let before = out.len();
        t.push(&ANTHROPIC[content_end..], &mut out);
        t.finish(&mut out, None);
        assert_eq!(out.len(), before);
    }

    #[test]
    fn an_overload_before_content_is_a_retryable_failure() {
        let mut t = TranslatedStream::new(Native::Anthropic, ChunkEncoder::new("g", "m", 1, false));
        let mut out = Vec::new();
        t.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", &mut out);
        assert!(
            matches!(
                t.progress(),
                Progress::Failed {
                    retryable: true,
                    ..
                }
            ),
            "{:?}",
            t.progress()
        );
    }

    #[test]
    fn protocols_map_to_natives() {
        assert_eq!(Native::of(Protocol::OpenAiCompat, "gpt-4o"), None);
        assert_eq!(
            Native::of(Protocol::Vertex, "claude-sonnet-4-6"),
            Some(Native::Vertex(vertex::Publisher::Anthropic))
        );
        assert_eq!(
            Native::of(Protocol::Vertex, "gemini-2.5-pro"),
            Some(Native::Vertex(vertex::Publisher::Google))
        );
    }
}

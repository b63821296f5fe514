//! The one Server-Sent Events decoder and encoder.
//!
//! The decoder is incremental: feed it bytes split anywhere (inside a line, inside a UTF-8
//! sequence, between `\r` and `\n`) and it yields the same events as if the whole stream had come
//! at once. It follows the WHATWG rules: lines end in `\n`, `\r\n` or `\r`; `:` starts a comment;
//! `data` lines of one event are joined with `\n`; a blank line dispatches the event.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// True for OpenAI's end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data == "[DONE]"
    }
}

/// The largest event a stream may send (a pending line, or one event's data): past it the stream is
/// stopped rather than buffered without end. Generous for chat (an inline image or a whole
/// function call fits many times over), small beside an isolate's 128 MB.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The error that ends a stream whose provider sent an event over [`MAX_EVENT_BYTES`].
pub fn oversized_event_error() -> crate::error::GatewayError {
    crate::error::GatewayError::bad_gateway(format!(
        "The provider sent a stream event larger than {} MiB; the stream was stopped.",
        MAX_EVENT_BYTES >> 20
    ))
    .with_code("stream_event_too_large")
}

/// Incremental SSE decoder. `feed` bytes, then drain with `next_event` until it returns `None`.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already split into lines.
    pos: usize,
    /// Bytes of `buf` already searched for a line ending (from `pos`): a long line arriving in
    /// many pieces is scanned once, not once per piece.
    scanned: usize,
    /// The last line ended in `\r`; a `\n` that follows belongs to it.
    skip_lf: bool,
    /// No byte seen yet (a leading UTF-8 BOM is dropped).
    at_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// An event outgrew [`MAX_EVENT_BYTES`]: nothing more is buffered or decoded.
    too_large: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        SseDecoder {
            at_start: true,
            ..Default::default()
        }
    }

    /// Whether an event outgrew [`MAX_EVENT_BYTES`] (the stream is then refused).
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// Appends bytes from the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            self.scanned = 0;
        } else if self.pos > 4096 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start && !self.buf.is_empty() {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return; // maybe a BOM, wait for more
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.at_start = false;
        }
    }

    /// The next complete event, if the bytes fed so far hold one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if self.at_start || self.too_large {
            return None;
        }
        loop {
            if self.skip_lf && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.skip_lf = false;
            }
            let from = self.scanned.max(self.pos);
            let Some(end) = memchr::memchr2(b'\n', b'\r', &self.buf[from..]) else {
                self.scanned = self.buf.len();
                if self.buf.len() - self.pos + self.data.len() > MAX_EVENT_BYTES {
                    self.refuse();
                }
                return None;
            };
            let line_start = self.pos;
            let line_end = from + end;
            if self.buf[line_end] == b'\r' {
                self.skip_lf = true;
            }
            self.pos = line_end + 1;
            self.scanned = self.pos;
            if line_start == line_end {
                if let Some(ev) = self.dispatch() {
                    return Some(ev);
                }
                continue;
            }
            let (start, stop) = (line_start, line_end);
            self.field(start, stop);
        }
    }

    /// Ends the stream: an event left without its closing blank line is still delivered
    /// (providers sometimes omit it before closing), a partial line is taken as complete.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if let Some(ev) = self.next_event() {
            return Some(ev);
        }
        if self.pos < self.buf.len() {
            let (start, stop) = (self.pos, self.buf.len());
            self.pos = stop;
            self.field(start, stop);
        }
        self.dispatch()
    }

    fn field(&mut self, start: usize, stop: usize) {
        let line = &self.buf[start..stop];
        if line[0] == b':' {
            return; // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    self.refuse();
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry and unknown fields carry nothing we use
        }
    }

    fn refuse(&mut self) {
        self.too_large = true;
        self.buf = Vec::new();
        self.data = String::new();
        self.has_data = false;
        self.pos = 0;
        self.scanned = 0;
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        if self.too_large || !self.has_data {
            self.event = None;
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// Appends `data: <payload>\n\n`.
pub fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

/// OpenAI's end-of-stream sentinel.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn an_event_past_the_limit_stops_the_decoder_and_nothing_more_is_buffered() {
        let mib = vec![b'a'; 1 << 20];
        // One endless line arriving in pieces.
        let mut d = SseDecoder::new();
        d.feed(b"data: ok\n\ndata: ");
        assert_eq!(d.next_event().unwrap().data, "ok");
        for i in 0..=(MAX_EVENT_BYTES >> 20) {
            // refused once the pending line ("data: " + i MiB) is past the limit, not before
            assert_eq!(d.too_large(), i == MAX_EVENT_BYTES >> 20);
            d.feed(&mib);
            assert!(d.next_event().is_none());
        }
        assert!(d.too_large());
        d.feed(b"\n\ndata: later\n\n");
        assert!(d.next_event().is_none() && d.finish().is_none());
        assert!(
            d.buf.capacity() == 0 && d.data.capacity() == 0,
            "buffers released"
        );
        // Many short data lines adding up to one oversized event.
        let mut d = SseDecoder::new();
        let line = [b"data: ".as_slice(), &mib, b"\n"].concat();
        for _ in 0..=(MAX_EVENT_BYTES >> 20) {
            d.feed(&line);
            assert!(d.next_event().is_none());
        }
        assert!(d.too_large());
        // Just under the limit is an event like any other.
        let mut d = SseDecoder::new();
        let big = vec![b'b'; MAX_EVENT_BYTES - 1];
        d.feed(b"data: ");
        for piece in big.chunks(1 << 16) {
            d.feed(piece);
        }
        d.feed(b"\n\n");
        assert_eq!(d.next_event().unwrap().data.len(), MAX_EVENT_BYTES - 1);
        assert!(!d.too_large());
    }

    /// Decodes a whole stream fed in the given pieces.
    pub(crate) fn decode_pieces(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for p in pieces {
            d.feed(p);
            while let Some(ev) = d.next_event() {
                out.push(ev);
            }
        }
        while let Some(ev) = d.finish() {
            out.push(ev);
        }
        out
    }

    /// Asserts that every split of `stream` into two and into three pieces decodes the same.
    pub(crate) fn assert_split_invariant(stream: &[u8]) -> Vec<SseEvent> {
        let whole = decode_pieces(&[stream]);
        for i in 0..=stream.len() {
            let (a, b) = stream.split_at(i);
            assert_eq!(decode_pieces(&[a, b]), whole, "split at byte {i}");
        }
        // byte by byte, the worst case
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_pieces(&bytes), whole, "byte by byte");
        whole
    }

    #[test]
    fn decodes_fields_comments_and_multiline_data() {
        let evs = decode_pieces(&[
            b": keep-alive\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: line1\ndata: line2\nid: 7\nretry: 10\n\n",
        ]);
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "line1\nline2".into()
                },
            ]
        );
    }

    #[test]
    fn handles_every_line_ending_and_a_bom() {
        let evs = decode_pieces(&[b"\xEF\xBB\xBFdata:a\r\n\r\ndata: b\r\rdata:  c\n\n"]);
        let data: Vec<_> = evs.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, vec!["a", "b", " c"]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_done_is_recognised() {
        let evs = decode_pieces(&[b"event: ping\n\ndata: [DONE]\n\n"]);
        assert_eq!(evs.len(), 1);
        assert!(evs[0].is_done());
        assert_eq!(
            evs[0].event, None,
            "the event name of a data-less event does not leak"
        );
    }

    #[test]
    fn finish_delivers_a_trailing_event_without_blank_line() {
        let evs = decode_pieces(&[b"data: 1\n\ndata: 2"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].data, "2");
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let stream = "\u{feff}event: a\r\ndata: héllo wörld 🎉\r\n\r\n: c\ndata: x\rdata: y\r\r\ndata: [DONE]\n\n";
        let evs = assert_split_invariant(stream.as_bytes());
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].data, "héllo wörld 🎉");
        assert_eq!(evs[1].data, "x\ny");
    }

    #[test]
    fn encoders_write_what_the_decoder_reads() {
        let mut out = Vec::new();
        out.extend_from_slice(b"event: message_stop\n");
        write_data(&mut out, b"{}");
        write_data(&mut out, b"{\"x\":1}");
        out.extend_from_slice(DONE);
        let evs = decode_pieces(&[&out]);
        assert_eq!(evs[0].event.as_deref(), Some("message_stop"));
        assert_eq!(evs[1].data, "{\"x\":1}");
        assert!(evs[2].is_done());
    }
}

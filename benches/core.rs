//! Native micro-benchmarks of the gateway's hot paths (`cargo bench --bench core`).
//!
//! Plain `std::time::Instant` loops, no dependencies: each case is warmed up, then timed over
//! several rounds of a fixed time budget; the best round's mean is reported (the least disturbed
//! by other work on a shared machine), with the median round beside it.
//!
//! Per event: SSE decode, provider-to-OpenAI translation and OpenAI chunk encoding of long
//! Anthropic and Gemini streams, built by repeating the content-delta events of the real recorded
//! streams in tests/fixtures. Per request: the fast-path body handling (`RawObject::parse`,
//! `chat_summary`, `to_json_with_model`), `routing::resolve` and the whole `routing::plan`, and the
//! translated path's request
//! and response translation.
//!
//! Output: a Markdown table on stdout. `BENCH_NATIVE_MS` sets the time per round (default 300).

use std::hint::black_box;
use std::time::{Duration, Instant};

use switchyard::canonical::ChatRequest;
use switchyard::chat_body::RawObject;
use switchyard::config::Config;
use switchyard::formats::openai::ChunkEncoder;
use switchyard::platform::StreamTransform;
use switchyard::providers::{anthropic, gemini, openai_compat::PassThroughStream};
use switchyard::routing::{self, Draws};
use switchyard::sse::SseDecoder;

const ROUNDS: usize = 5;
const REPEAT: usize = 400;

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Splits an SSE text into its events (each with its closing blank line), keeping line endings.
fn split_events(text: &str) -> Vec<String> {
    let sep = if text.contains("\r\n\r\n") {
        "\r\n\r\n"
    } else {
        "\n\n"
    };
    text.split(sep)
        .filter(|e| !e.trim().is_empty())
        .map(|e| format!("{e}{sep}"))
        .collect()
}

/// A long stream: every event for which `repeat` holds is sent `times` times in its place.
fn lengthen(events: &[String], times: usize, repeat: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in events {
        let n = if repeat(e) { times } else { 1 };
        for _ in 0..n {
            out.push(e.as_bytes().to_vec());
        }
    }
    out
}

struct Stats {
    best_ns: f64,
    median_ns: f64,
}

/// Times `f` (one call = one unit of work), returning ns per call.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> Stats {
    let warm = Instant::now();
    while warm.elapsed() < budget / 2 {
        f();
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            for _ in 0..8 {
                f();
            }
            n += 8;
        }
        rounds.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stats {
        best_ns: rounds[0],
        median_ns: rounds[ROUNDS / 2],
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Decode,
    Translate,
    Encode,
}

/// Runs one whole stream through the pipeline up to `stage`; returns (events, output bytes).
fn run_stream(chunks: &[Vec<u8>], provider: &str, stage: Stage) -> (usize, usize) {
    let mut dec = SseDecoder::new();
    let mut a = anthropic::StreamTranslator::new();
    let mut g = gemini::StreamTranslator::new();
    let mut enc = ChunkEncoder::new(
        "chatcmpl-bench",
        "anthropic/claude-sonnet-4-6",
        1_764_201_600,
        true,
    );
    let mut parts = Vec::new();
    let mut out = Vec::with_capacity(4096);
    let (mut events, mut bytes) = (0usize, 0usize);
    let mut handle = |ev: &switchyard::sse::SseEvent, parts: &mut Vec<_>, out: &mut Vec<u8>| {
        if stage == Stage::Decode {
            black_box(ev);
            return;
        }
        if provider == "anthropic" {
            a.on_event(ev, parts);
        } else {
            g.on_event(ev, parts);
        }
        if stage == Stage::Encode {
            for p in parts.drain(..) {
                enc.encode(p, out);
            }
        } else {
            black_box(&parts);
            parts.clear();
        }
    };
    for chunk in chunks {
        dec.feed(chunk);
        while let Some(ev) = dec.next_event() {
            events += 1;
            handle(&ev, &mut parts, &mut out);
        }
        // what the edge hands on per upstream chunk
        bytes += out.len();
        out.clear();
    }
    while let Some(ev) = dec.finish() {
        events += 1;
        handle(&ev, &mut parts, &mut out);
    }
    if stage != Stage::Decode {
        if provider == "anthropic" {
            a.finish(&mut parts);
        } else {
            g.finish(&mut parts);
        }
        if stage == Stage::Encode {
            for p in parts.drain(..) {
                enc.encode(p, &mut out);
            }
            enc.finish(&mut out);
        }
    }
    bytes += out.len();
    (events, bytes)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it: then
    // every case runs once, briefly, as a check that it still works, not as a measurement.
    let measuring = std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if measuring {
        std::env::var("BENCH_NATIVE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    } else {
        1
    });
    let mut rows: Vec<(String, String, f64, f64, String)> = Vec::new();

    // --- streams: per event ---
    let delta = |e: &str| e.contains("\"content_block_delta\"") && !e.contains("signature_delta");
    let streams: Vec<(&str, &str, Vec<Vec<u8>>)> = vec![
        (
            "anthropic stream (text)",
            "anthropic",
            lengthen(
                &split_events(&fixture("anthropic/basic_text.sse")),
                REPEAT,
                delta,
            ),
        ),
        (
            "anthropic stream (thinking then text)",
            "anthropic",
            lengthen(
                &split_events(&fixture("anthropic/thinking_then_text.sse")),
                REPEAT / 4,
                delta,
            ),
        ),
        (
            "anthropic stream (text then tool use)",
            "anthropic",
            lengthen(
                &split_events(&fixture("anthropic/text_then_tool_use.sse")),
                REPEAT / 4,
                delta,
            ),
        ),
        (
            "gemini stream (text with thought signature)",
            "gemini",
            lengthen(
                &split_events(&fixture("gemini/text_with_thought_signature.sse")),
                REPEAT,
                |e| !e.contains("finishReason") && !e.contains("thoughtSignature"),
            ),
        ),
    ];
    // Settle the machine first (CPU frequency, caches, a compile that just finished): the first
    // case timed was otherwise the noisiest.
    let settle = Instant::now();
    while settle.elapsed() < budget * 3 {
        for (_, provider, chunks) in &streams {
            black_box(run_stream(chunks, provider, Stage::Encode));
        }
    }
    for (name, provider, chunks) in &streams {
        let (events, out_bytes) = run_stream(chunks, provider, Stage::Encode);
        assert!(out_bytes > 0, "{name}: no output");
        let in_bytes: usize = chunks.iter().map(Vec::len).sum();
        for (stage, label) in [
            (Stage::Encode, "decode + translate + encode"),
            (Stage::Translate, "decode + translate"),
            (Stage::Decode, "decode only"),
        ] {
            let s = time(budget, || {
                black_box(run_stream(black_box(chunks), provider, stage));
            });
            rows.push((
                format!("{name}: {label}"),
                format!("{events} events, {in_bytes} B in, {out_bytes} B out"),
                s.best_ns / events as f64,
                s.median_ns / events as f64,
                "ns/event".into(),
            ));
        }
    }

    // One large event (an inline image, a whole function call) arriving in many pieces: the
    // decoder must stay linear in the bytes, not scan the pending line again for every piece.
    let big_event = {
        let mut e = b"data: {\"inline\":\"".to_vec();
        e.resize(e.len() + 4 * 1024 * 1024, b'A');
        e.extend_from_slice(b"\"}\n\n");
        e
    };
    let s = time(budget, || {
        let mut dec = SseDecoder::new();
        let mut n = 0;
        for piece in big_event.chunks(16 * 1024) {
            dec.feed(black_box(piece));
            while let Some(ev) = dec.next_event() {
                n += ev.data.len();
            }
        }
        assert!(n > 0);
    });
    rows.push((
        "sse decode: one 4 MiB event in 16 KiB pieces".into(),
        format!("{} B", big_event.len()),
        s.best_ns / big_event.len() as f64,
        s.median_ns / big_event.len() as f64,
        "ns/byte".into(),
    ));

    // The OpenAI-compatible pass-through scanner (content start, `[DONE]`, finish), per event:
    // what the edge runs on every chunk of a pass-through stream.
    let openai = lengthen(&split_events(&fixture("openai/openai-text.sse")), 4, |e| {
        e.contains("\"content\":\"") && !e.contains("\"role\"")
    });
    let pass = |chunks: &[Vec<u8>]| {
        let mut t = PassThroughStream::new("openai");
        t.set_trailer(
            switchyard::formats::openai::Trailer::fixed(b"data: {}\n\n".to_vec()),
            &mut Vec::new(),
        );
        let (mut out, mut bytes) = (Vec::with_capacity(4096), 0);
        for c in chunks {
            t.push(c, &mut out);
            bytes += out.len();
            out.clear();
        }
        t.finish(&mut out, None);
        bytes + out.len()
    };
    let in_bytes: usize = openai.iter().map(Vec::len).sum();
    let out_bytes = pass(&openai);
    assert!(out_bytes > in_bytes, "the trailer is added");
    let s = time(budget, || {
        black_box(pass(black_box(&openai)));
    });
    rows.push((
        "openai-compatible stream (text): pass-through scan".into(),
        format!(
            "{} events, {in_bytes} B in, {out_bytes} B out",
            openai.len()
        ),
        s.best_ns / openai.len() as f64,
        s.median_ns / openai.len() as f64,
        "ns/event".into(),
    ));

    // --- requests ---
    let small =
        br#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
    let big = {
        let long = "Explain, with examples, how a gateway routes requests. ".repeat(40);
        format!(
            r#"{{"model":"openai/gpt-4o","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{long}"}},{{"role":"assistant","content":"Sure."}},{{"role":"user","content":"Go on."}}],"tools":[{{"type":"function","function":{{"name":"get_weather","description":"Get the weather","parameters":{{"type":"object","properties":{{"city":{{"type":"string"}},"unit":{{"type":"string","enum":["c","f"]}}}},"required":["city"]}}}}}}],"temperature":0.7,"stream":true,"stream_options":{{"include_usage":true}},"max_tokens":512}}"#
        )
        .into_bytes()
    };
    for (label, body) in [("small body", &small), ("larger body with tools", &big)] {
        let s = time(budget, || {
            let obj = RawObject::parse(black_box(body)).unwrap();
            let summary = obj.chat_summary().unwrap();
            black_box(obj.to_json_with_model(&summary.model));
        });
        rows.push((
            format!("RawObject::parse + chat_summary + to_json_with_model ({label})"),
            format!("{} B", body.len()),
            s.best_ns,
            s.median_ns,
            "ns/request".into(),
        ));
    }

    let vars: Vec<(String, String)> = [
        ("ADMIN_TOKEN", "admin"),
        ("OPENAI_API_KEY", "sk-o"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
        ("OPENAI_API_KEY_2", "sk-o2"),
        ("ANTHROPIC_API_KEY", "sk-a"),
        ("VERTEX_API_KEY", "{}"),
        ("GOOGLE_API_KEY", "g"),
        ("XAI_API_KEY", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lookup = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let s = time(budget, || {
        black_box(Config::from_lookup(lookup));
    });
    rows.push((
        "Config::from_lookup (once per isolate)".into(),
        String::new(),
        s.best_ns,
        s.median_ns,
        "ns/isolate".into(),
    ));
    let config = Config::from_lookup(lookup);
    for model in [
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-6",
        "xai/grok-unlisted",
    ] {
        if routing::resolve(model, &config).is_err() {
            continue; // provider not configured in this build: nothing to time
        }
        let s = time(budget, || {
            black_box(routing::resolve(black_box(model), &config).unwrap());
        });
        rows.push((
            format!("routing::resolve({model})"),
            String::new(),
            s.best_ns,
            s.median_ns,
            "ns/request".into(),
        ));
    }

    // the whole routing plan for one request (resolve, options, weights, breakers, one attempt
    // per credential), with a fallback model and weights in play
    let opts: routing::RoutingOptions =
        serde_json::from_str(r#"{"models":["xai/grok-3"]}"#).expect("options");
    let breakers = routing::Breakers::new(3, 30_000);
    let mut weights = routing::Weights::new();
    weights.insert(
        "anthropic/claude-sonnet-4-6".into(),
        [("anthropic".to_owned(), 3.0), ("vertex".to_owned(), 1.0)].into(),
    );
    let draws = Draws {
        provider: 0.3,
        credential: 0.6,
    };
    for model in ["openai/gpt-4o", "anthropic/claude-sonnet-4-6"] {
        if routing::plan(model, &opts, &config, &weights, &breakers, 0, draws).is_err() {
            continue;
        }
        let s = time(budget, || {
            black_box(
                routing::plan(
                    black_box(model),
                    &opts,
                    &config,
                    &weights,
                    &breakers,
                    1_700_000_000_000,
                    draws,
                )
                .unwrap(),
            );
        });
        rows.push((
            format!("routing::plan({model}, fallback xai/grok-3)"),
            String::new(),
            s.best_ns,
            s.median_ns,
            "ns/request".into(),
        ));
    }

    // translated path: request and response translation
    let an_body = br#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let s = time(budget, || {
        let req = ChatRequest::from_json(black_box(an_body)).unwrap();
        black_box(anthropic::build_request(&req, "claude-sonnet-4-6").unwrap());
    });
    rows.push((
        "ChatRequest::from_json + anthropic::build_request (small body)".into(),
        format!("{} B", an_body.len()),
        s.best_ns,
        s.median_ns,
        "ns/request".into(),
    ));
    let big_an = String::from_utf8(big.clone())
        .unwrap()
        .replace("openai/gpt-4o", "anthropic/claude-sonnet-4-6");
    let s = time(budget, || {
        let req = ChatRequest::from_json(black_box(big_an.as_bytes())).unwrap();
        black_box(anthropic::build_request(&req, "claude-sonnet-4-6").unwrap());
    });
    rows.push((
        "ChatRequest::from_json + anthropic::build_request (larger body with tools)".into(),
        format!("{} B", big_an.len()),
        s.best_ns,
        s.median_ns,
        "ns/request".into(),
    ));
    let text_json = fixture("anthropic/text.json");
    let s = time(budget, || {
        black_box(anthropic::translate_response(black_box(text_json.as_bytes())).unwrap());
    });
    rows.push((
        "anthropic::translate_response (tests/fixtures/anthropic/text.json)".into(),
        format!("{} B", text_json.len()),
        s.best_ns,
        s.median_ns,
        "ns/request".into(),
    ));

    if !measuring {
        println!(
            "{} benchmark cases ran (unmeasured; `cargo bench --bench core` measures them).",
            rows.len()
        );
        return;
    }
    println!("| case | input | best | median | unit |");
    println!("|---|---|---:|---:|---|");
    for (name, input, best, median, unit) in rows {
        let digits = if best < 10.0 { 2 } else { 0 };
        println!("| {name} | {input} | {best:.digits$} | {median:.digits$} | {unit} |");
    }
    println!();
    println!(
        "Best and median of {ROUNDS} rounds of {} ms each after {} ms of warm-up; release profile (opt-level \"s\", LTO), native x86-64.",
        budget.as_millis(),
        budget.as_millis() / 2
    );
}

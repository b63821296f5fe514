//! The whole pipeline, natively, over fakes: an in-memory KV, a scripted upstream, a fixed clock.

use super::*;
use crate::config::tests::config;
use crate::platform::{FetchError, UpstreamRequest, UpstreamResponse};
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

#[derive(Default)]
struct Fake {
    kv: RefCell<BTreeMap<String, (String, Option<String>)>>,
    kv_reads: Cell<usize>,
    sent: RefCell<Vec<UpstreamRequest>>,
    replies: RefCell<VecDeque<Result<UpstreamResponse<FakeBody>, FetchError>>>,
    slept: RefCell<Vec<u64>>,
    cancelled: Cell<usize>,
    /// KV deletes of keys with this prefix fail (a KV outage mid-revocation).
    kv_delete_fails: Cell<Option<&'static str>>,
    /// KV deletes made so far, and which one (1-based) fails, if any.
    kv_deletes: Cell<usize>,
    kv_delete_fails_at: Cell<Option<usize>>,
    /// Key lookups (`keys/hash/…`) read their value, then let other requests run before they
    /// answer with it (a lookup in flight while an admin call changes the key).
    kv_lookups_yield: Cell<bool>,
    /// Provider calls let other requests run before they answer (requests in flight at once).
    fetch_yields: Cell<bool>,
    now: std::rc::Rc<Cell<u64>>,
    /// Milliseconds each streamed piece takes to arrive.
    chunk_ms: Cell<u64>,
    counter: Cell<u8>,
}

impl Clock for Fake {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn fill_random(&self, buf: &mut [u8]) {
        self.counter.set(self.counter.get().wrapping_add(1));
        buf.fill(self.counter.get());
    }
    async fn sleep(&self, ms: u64) {
        self.slept.borrow_mut().push(ms);
        self.now.set(self.now.get() + ms);
    }
    fn now_source(&self) -> std::rc::Rc<dyn Fn() -> u64> {
        let now = self.now.clone();
        std::rc::Rc::new(move || now.get())
    }
}

/// A provider body: its pieces, or a failure where the connection broke.
type FakeBody = VecDeque<Result<Vec<u8>, FetchError>>;

impl Upstream for Fake {
    type Body = FakeBody;
    async fn fetch(
        &self,
        req: UpstreamRequest,
        timeout_ms: u64,
    ) -> Result<UpstreamResponse<FakeBody>, FetchError> {
        self.sent.borrow_mut().push(req);
        let reply = self
            .replies
            .borrow_mut()
            .pop_front()
            .unwrap_or(Err(FetchError::Network("connection refused".into())));
        if matches!(reply, Err(FetchError::Timeout)) {
            self.now.set(self.now.get() + timeout_ms);
        }
        if self.fetch_yields.get() {
            YieldOnce(false).await;
        }
        reply
    }
    async fn read_body(
        &self,
        body: FakeBody,
        _timeout_ms: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let mut all = Vec::new();
        for piece in body {
            all.extend_from_slice(&piece?);
            if all.len() > max_bytes {
                self.cancelled.set(self.cancelled.get() + 1); // the platform cancels it
                return Err(FetchError::TooLarge);
            }
        }
        Ok(all)
    }
    async fn next_chunk(
        &self,
        body: &mut FakeBody,
        _timeout_ms: u64,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.now.set(self.now.get() + self.chunk_ms.get());
        body.pop_front().transpose()
    }
    fn cancel(&self, _body: FakeBody) {
        self.cancelled.set(self.cancelled.get() + 1);
    }
}

/// Workers KV refuses key names over 512 bytes (the fake does as KV does).
fn kv_key_fits(key: &str) -> Result<(), GatewayError> {
    if key.len() > 512 {
        return Err(GatewayError::internal("KV: key name longer than 512 bytes"));
    }
    Ok(())
}

impl Kv for Fake {
    async fn get(&self, key: &str) -> Result<Option<String>, GatewayError> {
        kv_key_fits(key)?;
        self.kv_reads.set(self.kv_reads.get() + 1);
        let value = self.kv.borrow().get(key).map(|(v, _)| v.clone());
        if self.kv_lookups_yield.get() && key.starts_with("keys/hash/") {
            YieldOnce(false).await;
        }
        Ok(value)
    }
    async fn put(
        &self,
        key: &str,
        value: &str,
        meta: Option<&str>,
        _ttl: Option<u64>,
    ) -> Result<(), GatewayError> {
        kv_key_fits(key)?;
        let entry = (value.to_owned(), meta.map(str::to_owned));
        self.kv.borrow_mut().insert(key.to_owned(), entry);
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), GatewayError> {
        kv_key_fits(key)?;
        self.kv_deletes.set(self.kv_deletes.get() + 1);
        if self
            .kv_delete_fails
            .get()
            .is_some_and(|p| key.starts_with(p))
            || self.kv_delete_fails_at.get() == Some(self.kv_deletes.get())
        {
            return Err(GatewayError::internal("KV is unavailable"));
        }
        self.kv.borrow_mut().remove(key);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, GatewayError> {
        Ok(self
            .kv
            .borrow()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, m))| (k.clone(), m.clone()))
            .collect())
    }
}

/// Pending once (waking itself), then ready: lets `join`ed requests interleave.
struct YieldOnce(bool);
impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

struct Body(Vec<u8>);
impl InboundBody for Body {
    async fn read(
        self,
        max_bytes: usize,
        _declared: Option<u64>,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        Ok((self.0.len() <= max_bytes).then_some(self.0))
    }
}

fn reply(
    status: u16,
    content_type: &str,
    body: &str,
) -> Result<UpstreamResponse<FakeBody>, FetchError> {
    Ok(UpstreamResponse {
        status,
        content_type: Some(content_type.into()),
        retry_after: None,
        retry_after_ms: None,
        content_length: None,
        body: VecDeque::from([Ok(body.as_bytes().to_vec())]),
    })
}

/// A streamed reply in pieces, optionally broken off after them.
fn stream_reply(pieces: &[&str], broken: bool) -> Result<UpstreamResponse<FakeBody>, FetchError> {
    let mut body: FakeBody = pieces.iter().map(|p| Ok(p.as_bytes().to_vec())).collect();
    if broken {
        body.push_back(Err(FetchError::Network("connection reset".into())));
    }
    Ok(UpstreamResponse {
        status: 200,
        content_type: Some("text/event-stream".into()),
        retry_after: None,
        retry_after_ms: None,
        content_length: None,
        body,
    })
}

const ADMIN: &str = "Bearer admin-secret-token";

struct World {
    gw: Gateway,
    p: Fake,
}

struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl World {
    fn new() -> World {
        World::with(&[])
    }

    fn with(extra: &[(&str, &str)]) -> World {
        let mut vars = vec![
            ("ADMIN_TOKEN", "admin-secret-token"),
            ("OPENAI_API_KEY", "sk-openai-provider-secret"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1"),
            ("XAI_API_KEY", "xai-provider-secret"),
            ("CORS_ORIGINS", "https://app.example"),
        ];
        vars.extend_from_slice(extra);
        World {
            gw: Gateway::new(config(&vars)),
            p: Fake {
                now: std::rc::Rc::new(Cell::new(1_700_000_000_000)),
                ..Default::default()
            },
        }
    }

    fn call(&self, method: &str, url: &str, auth: Option<&str>, body: &str) -> Answer {
        self.call_with(
            Inbound {
                method,
                url,
                authorization: auth,
                ..Default::default()
            },
            body,
        )
    }

    fn call_with(&self, req: Inbound<'_>, body: &str) -> Answer {
        let out = block_on(
            self.gw
                .handle(&self.p, &req, Body(body.as_bytes().to_vec())),
        );
        Self::answer(out)
    }

    /// Two calls at once, interleaved at their awaits (the first polled first): each is a
    /// method, a path, an authorization header and a body.
    fn call_both(&self, a: [&str; 4], b: [&str; 4]) -> (Answer, Answer) {
        fn inbound<'a>([method, url, auth, _]: [&'a str; 4]) -> Inbound<'a> {
            Inbound {
                method,
                url,
                authorization: Some(auth),
                ..Default::default()
            }
        }
        let (ia, ib) = (inbound(a), inbound(b));
        let (oa, ob) = block_on(futures::future::join(
            self.gw.handle(&self.p, &ia, Body(a[3].as_bytes().to_vec())),
            self.gw.handle(&self.p, &ib, Body(b[3].as_bytes().to_vec())),
        ));
        (Self::answer(oa), Self::answer(ob))
    }

    fn answer(out: Outbound<FakeBody>) -> Answer {
        let body = match out.body {
            OutBody::Empty => Vec::new(),
            OutBody::Bytes(b) => b,
            OutBody::Stream {
                prefix,
                mut body,
                mut transform,
                ..
            } => {
                let mut o = prefix;
                let mut broke = None;
                while let Some(piece) = body.pop_front() {
                    match piece {
                        Ok(c) => transform.push(&c, &mut o),
                        Err(e) => {
                            broke = Some(e);
                            break;
                        }
                    }
                }
                transform.finish(&mut o, broke.as_ref());
                o
            }
        };
        Answer {
            status: out.status,
            headers: out.headers,
            body,
        }
    }

    /// A chat completion's outbound answer as handed to the edge, its stream not yet read.
    fn chat_handed_off(&self, key: &str, body: &str) -> Outbound<FakeBody> {
        let auth = bearer(key);
        let req = Inbound {
            method: "POST",
            url: "/v1/chat/completions",
            authorization: Some(&auth),
            ..Default::default()
        };
        block_on(
            self.gw
                .handle(&self.p, &req, Body(body.as_bytes().to_vec())),
        )
    }

    /// Queues the provider's next reply.
    fn reply(&self, r: Result<UpstreamResponse<FakeBody>, FetchError>) {
        self.p.replies.borrow_mut().push_back(r);
    }

    /// A chat completion with gateway key `key`.
    fn chat(&self, key: &str, body: &str) -> Answer {
        self.call("POST", "/v1/chat/completions", Some(&bearer(key)), body)
    }

    /// `openai/gpt-4o` with `xai/grok-3` as its fallback model.
    fn chat_with_xai_fallback(&self, key: &str) -> Answer {
        self.chat(
            key,
            &gpt(r#","providerOptions":{"gateway":{"models":["xai/grok-3"]}}"#),
        )
    }

    /// The same, streamed.
    fn stream_with_xai_fallback(&self, key: &str) -> Answer {
        self.chat(
            key,
            &gpt(r#","stream":true,"providerOptions":{"gateway":{"models":["xai/grok-3"]}}"#),
        )
    }

    fn new_key(&self) -> (String, String) {
        let a = self.call("POST", "/admin/keys", Some(ADMIN), r#"{"name":"ci"}"#);
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("cache-control"), Some("no-store"), "the secret");
        let v = a.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn key_lifecycle_create_list_use_revoke() {
    let w = World::new();
    let (id, key) = w.new_key();
    assert!(key.starts_with("sk-sy-") && id.starts_with("key_"));
    // stored only as a hash
    let stored = format!("{:?}", w.p.kv.borrow());
    assert!(!stored.contains(&key), "the secret is not stored");
    // listed without the secret or its hash
    let list = w.call("GET", "/admin/keys", Some(ADMIN), "");
    assert_eq!(list.status, 200);
    assert_eq!(list.header("cache-control"), Some("no-store"));
    let text = String::from_utf8(list.body.clone()).unwrap();
    assert!(!text.contains(&key) && !text.contains(&crate::auth::hash_secret(&key)));
    assert_eq!(list.json()["data"][0]["id"], id);
    assert_eq!(list.json()["data"][0]["name"], "ci");
    // usable
    let auth = bearer(&key);
    assert_eq!(w.call("GET", "/v1/models", Some(&auth), "").status, 200);
    // renamed
    let patched = w.call(
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(ADMIN),
        r#"{"name":"ci-2"}"#,
    );
    assert_eq!(
        (patched.status, patched.json()["name"].clone()),
        (200, json!("ci-2"))
    );
    // revoked: refused on the very next request in this isolate, despite the cache
    let del = w.call("DELETE", &format!("/admin/keys/{id}"), Some(ADMIN), "");
    assert_eq!(del.status, 200);
    assert_eq!(del.json()["deleted"], true);
    let after = w.call("GET", "/v1/models", Some(&auth), "");
    assert_eq!(after.status, 401);
    assert_eq!(after.json()["error"]["type"], "authentication_error");
    assert_eq!(
        w.call("DELETE", &format!("/admin/keys/{id}"), Some(ADMIN), "")
            .status,
        404
    );
    assert_eq!(
        w.call("GET", "/admin/keys", Some(ADMIN), "").json()["data"],
        json!([])
    );
}

#[test]
fn a_key_id_that_is_not_one_of_ours_is_a_404_without_a_lookup_or_an_echo() {
    let w = World::new();
    let (id, key) = w.new_key();
    let inbound = Inbound {
        authorization: Some(&key),
        ..Inbound::default()
    };
    assert!(
        !format!("{inbound:?}").contains(&key),
        "Debug hides the credential"
    );
    let long = "a".repeat(600); // longer than KV takes as a key name
    for bad in [long.as_str(), key.as_str(), "key_nope"] {
        for (method, body) in [("DELETE", ""), ("PATCH", r#"{"name":"x"}"#)] {
            let a = w.call(method, &format!("/admin/keys/{bad}"), Some(ADMIN), body);
            assert_eq!(a.status, 404, "{method} {bad}: {}", a.text());
            assert_eq!(a.header("cache-control"), Some("no-store"), "errors too");
            assert_eq!(a.json()["error"]["type"], "invalid_request_error");
            assert!(!a.text().contains(bad), "{method}: the id is not echoed");
        }
    }
    // Nor is a secret pasted into a path where no route or method takes it.
    for (method, path) in [
        ("GET", format!("/admin/keys/{key}")),
        ("DELETE", format!("/admin/keys/{key}/x")),
        ("GET", format!("/v1/{key}")),
        ("GET", "/v1/sk-proj-abcdefghijklmnop".to_owned()),
        ("GET", format!("/v1/Bearer%20{key}")),
    ] {
        let a = w.call(method, &path, Some(ADMIN), "");
        assert!(
            matches!(a.status, 404 | 405),
            "{method} {path}: {}",
            a.text()
        );
        assert!(!a.text().contains("sk-"), "{method} {path}: {}", a.text());
    }
    assert!(w
        .call("GET", "/v1/nothing-here", None, "")
        .text()
        .contains("/v1/nothing-here"));
    // Nor as a model id.
    let a = w.call("GET", &format!("/v1/models/{key}"), Some(&bearer(&key)), "");
    assert_eq!(a.status, 404);
    assert!(!a.text().contains("sk-"), "{}", a.text());
    let hi = r#""messages":[{"role":"user","content":"hi"}]"#;
    for body in [
        format!(r#"{{"model":"{key}",{hi}}}"#),
        format!(r#"{{"model":"openai/{key}",{hi}}}"#),
        format!(r#"{{"model":"perplexity/{key}",{hi}}}"#),
        format!(
            r#"{{"model":"openai/gpt-4o",{hi},"providerOptions":{{"gateway":{{"models":["{key}"]}}}}}}"#
        ),
        format!(r#"{{"model":"gsk_{}",{hi}}}"#, "a".repeat(40)),
    ] {
        let a = w.chat(&key, &body);
        assert!(matches!(a.status, 400 | 404), "{body}: {}", a.text());
        assert!(
            !a.text().contains("sk-") && !a.text().contains("gsk_"),
            "{body}: {}",
            a.text()
        );
    }
    // An id as issued, in lower case, names no key: no look-up.
    let reads = w.p.kv_reads.get();
    let a = w.call(
        "DELETE",
        &format!("/admin/keys/{}", id.to_lowercase()),
        Some(ADMIN),
        "",
    );
    assert_eq!(a.status, 404);
    assert_eq!(w.p.kv_reads.get(), reads, "not looked up");
    // The real id still works.
    let a = w.call("DELETE", &format!("/admin/keys/{id}"), Some(ADMIN), "");
    assert_eq!(a.status, 200, "{}", a.text());
}

#[test]
fn admin_calls_need_the_admin_token_and_valid_bodies() {
    let w = World::new();
    assert_eq!(w.call("GET", "/admin/keys", None, "").status, 401);
    assert_eq!(
        w.call("GET", "/admin/keys", Some("Bearer wrong"), "")
            .status,
        401
    );
    let (_, key) = w.new_key();
    assert_eq!(
        w.call("GET", "/admin/keys", Some(&bearer(&key)), "").status,
        401,
        "a gateway key is not an admin token"
    );
    let bad = w.call("POST", "/admin/keys", Some(ADMIN), r#"{"name":""}"#);
    assert_eq!(
        (bad.status, bad.json()["error"]["param"].clone()),
        (400, json!("name"))
    );
    let bad = w.call("POST", "/admin/keys", Some(ADMIN), "{nope");
    assert_eq!(bad.status, 400);
    let later = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        r#"{"name":"x","budget":{"limit":"1","period":"daily"}}"#,
    );
    assert_eq!(
        (later.status, later.json()["error"]["param"].clone()),
        (400, json!("budget")),
        "not silently ignored"
    );
    let no_admin = World::with(&[("ADMIN_TOKEN", "")]);
    let a = no_admin.call("GET", "/admin/keys", Some(ADMIN), "");
    assert_eq!(a.status, 401);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ADMIN_TOKEN"));
}

#[test]
fn steady_state_authentication_reads_no_storage() {
    let w = World::new();
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    w.call("GET", "/v1/models", Some(&auth), "");
    let reads = w.p.kv_reads.get();
    for _ in 0..10 {
        assert_eq!(w.call("GET", "/v1/models", Some(&auth), "").status, 200);
    }
    assert_eq!(w.p.kv_reads.get(), reads, "cached in the isolate");
    w.p.now.set(w.p.now.get() + 60_000);
    w.call("GET", "/v1/models", Some(&auth), "");
    assert_eq!(
        w.p.kv_reads.get(),
        reads + 1,
        "looked up again after the TTL"
    );
}

#[test]
fn bad_gateway_keys_are_401_in_openai_shape() {
    let w = World::new();
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic abc"),
        Some("Bearer sk-sy-000"),
    ] {
        let a = w.call(
            "POST",
            "/v1/chat/completions",
            auth,
            r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert_eq!(a.status, 401, "{auth:?}");
        let e = &a.json()["error"];
        assert!(e["message"].is_string() && e["type"] == "authentication_error");
        assert!(e.get("param").is_some() && e.get("code").is_some());
    }
    assert!(w.p.sent.borrow().is_empty(), "no provider was called");
}

#[test]
fn chat_is_forwarded_with_the_native_model_and_every_other_field_as_sent() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        200,
        "application/json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#,
    ));
    let body = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":7,"some_vendor_field":{"a":[1,2]}}"#;
    let a = w.call_with(
        Inbound {
            method: "POST",
            url: "https://gw.example/v1/chat/completions?x=1",
            authorization: Some(&bearer(&key)),
            request_id: Some("req-abc"),
            ..Default::default()
        },
        body,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json()["id"],
        "chatcmpl-1",
        "the provider's body is passed through"
    );
    assert_eq!(a.header("x-switchyard-provider"), Some("openai"));
    assert_eq!(a.header("x-request-id"), Some("req-abc"));
    let gen = a.header("x-generation-id").unwrap();
    assert!(gen.starts_with("gen_") && gen.len() == 30, "{gen}");
    let sent = w.p.sent.borrow();
    assert_eq!(sent[0].url, "http://127.0.0.1:9999/v1/chat/completions");
    let h = |n: &str| {
        sent[0]
            .headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        h("authorization").as_deref(),
        Some("Bearer sk-openai-provider-secret")
    );
    assert_eq!(h("x-request-id").as_deref(), Some("req-abc"));
    assert_eq!(
        String::from_utf8(sent[0].body.clone()).unwrap(),
        body.replace("openai/gpt-4o", "gpt-4o")
    );
}

#[test]
fn mistral_and_deepseek_get_their_own_names_for_the_fields_they_refuse_or_ignore() {
    let w = World::with(&[("MISTRAL_API_KEY", "mistral-secret")]);
    let (_, key) = w.new_key();
    let sent_body = |body: &str| -> Value {
        w.reply(reply(200, "text/event-stream", "data: [DONE]\n\n"));
        let a = w.chat(&key, body);
        assert_eq!(a.status, 200, "{}", a.text());
        let sent = w.p.sent.borrow();
        serde_json::from_slice(&sent.last().unwrap().body).unwrap()
    };
    let v = sent_body(
        r#"{"model":"mistral/mistral-large-latest","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":10,"max_completion_tokens":20}"#,
    );
    assert!(v.get("stream_options").is_none(), "{v}");
    assert!(v.get("max_completion_tokens").is_none(), "{v}");
    assert_eq!(
        v["max_tokens"], 20,
        "max_completion_tokens wins, as at OpenAI"
    );
    assert_eq!(v["model"], "mistral-large-latest");
    // A null max_completion_tokens leaves max_tokens standing.
    let v = sent_body(
        r#"{"model":"mistral/mistral-large-latest","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":10,"max_completion_tokens":null}"#,
    );
    assert_eq!(v["max_tokens"], 10, "{v}");
    // `seed` is `random_seed` there.
    let v = sent_body(
        r#"{"model":"mistral/mistral-large-latest","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7}"#,
    );
    assert!(v.get("seed").is_none(), "{v}");
    assert_eq!(v["random_seed"], 7, "{v}");
    // Its own name, also sent, wins (one key, not two).
    w.reply(reply(200, "text/event-stream", "data: [DONE]\n\n"));
    let a = w.chat(
        &key,
        r#"{"model":"mistral/mistral-large-latest","messages":[{"role":"user","content":"hi"}],"stream":true,"random_seed":3,"seed":7}"#,
    );
    assert_eq!(a.status, 200);
    let sent = String::from_utf8(w.p.sent.borrow().last().unwrap().body.clone()).unwrap();
    assert_eq!(sent.matches("random_seed").count(), 1, "{sent}");
    assert!(
        sent.contains(r#""random_seed":3"#) && !sent.contains("\"seed\""),
        "{sent}"
    );
    // A null one beside `seed` is not sent as a second key.
    w.reply(reply(200, "text/event-stream", "data: [DONE]\n\n"));
    w.chat(
        &key,
        r#"{"model":"mistral/mistral-large-latest","messages":[{"role":"user","content":"hi"}],"stream":true,"random_seed":null,"seed":7}"#,
    );
    let sent = String::from_utf8(w.p.sent.borrow().last().unwrap().body.clone()).unwrap();
    assert_eq!(sent.matches("random_seed").count(), 1, "{sent}");
    assert!(sent.contains(r#""random_seed":7"#), "{sent}");
    // DeepSeek takes the budget as `max_tokens` only (it ignores the other name).
    let w2 = World::with(&[("DEEPSEEK_API_KEY", "deepseek-secret")]);
    let (_, key2) = w2.new_key();
    w2.reply(reply(200, "text/event-stream", "data: [DONE]\n\n"));
    let a = w2.chat(
        &key2,
        r#"{"model":"deepseek/deepseek-chat","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":10,"max_completion_tokens":5,"seed":7}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let v: Value = serde_json::from_slice(&w2.p.sent.borrow().last().unwrap().body).unwrap();
    assert!(v.get("max_completion_tokens").is_none(), "{v}");
    assert_eq!(v["max_tokens"], 5, "{v}");
    assert_eq!(v["seed"], 7, "{v}");
    // Other providers get the fields as sent.
    let v = sent_body(
        r#"{"model":"xai/grok-3","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":20}"#,
    );
    assert_eq!(v["stream_options"]["include_usage"], true);
    assert_eq!(v["max_completion_tokens"], 20);
    let v = sent_body(
        r#"{"model":"xai/grok-3","messages":[{"role":"user","content":"hi"}],"stream":true,"seed":7}"#,
    );
    assert_eq!(v["seed"], 7);
}

#[test]
fn unknown_models_of_known_providers_are_forwarded_as_is() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(200, "text/event-stream", "data: [DONE]\n\n"));
    let a = w.chat(
        &key,
        r#"{"model":"xai/grok-next","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let sent = w.p.sent.borrow();
    assert_eq!(sent[0].url, "https://api.x.ai/v1/chat/completions");
    assert!(String::from_utf8_lossy(&sent[0].body).contains(r#""model":"grok-next""#));
}

#[test]
fn request_errors_name_their_field_and_never_reach_a_provider() {
    let w = World::with(&[("MAX_REQUEST_BYTES", "200")]);
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    let cases = [
        ("{not json", 400, Value::Null, "invalid_json"),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            400,
            json!("model"),
            "",
        ),
        (r#"{"model":"openai/gpt-4o"}"#, 400, json!("messages"), ""),
        (
            r#"{"model":"nope/x","messages":[{"role":"user","content":"x"}]}"#,
            404,
            json!("model"),
            "model_not_found",
        ),
    ];
    for (body, status, param, code) in cases {
        let a = w.call("POST", "/v1/chat/completions", Some(&auth), body);
        assert_eq!(a.status, status, "{body}");
        assert_eq!(a.json()["error"]["param"], param, "{body}");
        if !code.is_empty() {
            assert_eq!(a.json()["error"]["code"], code, "{body}");
        }
    }
    let big = format!(
        r#"{{"model":"openai/gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(300)
    );
    assert_eq!(
        w.call("POST", "/v1/chat/completions", Some(&auth), &big)
            .status,
        413
    );
    let declared = w.call_with(
        Inbound {
            method: "POST",
            url: "/v1/chat/completions",
            authorization: Some(&auth),
            content_length: Some("100000"),
            ..Default::default()
        },
        "{}",
    );
    assert_eq!(declared.status, 413, "refused on the declared length");
    assert!(w.p.sent.borrow().is_empty());
}

#[test]
fn methods_and_routes() {
    let w = World::new();
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    let a = w.call("GET", "/v1/chat/completions", Some(&auth), "");
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(a.json()["error"]["code"], "method_not_allowed");
    assert_eq!(w.call("PUT", "/admin/keys", Some(ADMIN), "").status, 405);
    assert_eq!(w.call("GET", "/v2/nothing", Some(&auth), "").status, 404);
    assert_eq!(w.call("GET", "/health", None, "").status, 200);
    // HEAD answers like GET, without a body (uptime monitors, curl -I).
    let head = w.call("HEAD", "/health", None, "");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(w.call("HEAD", "/v1/models", Some(&auth), "").status, 200);
    assert_eq!(w.call("HEAD", "/v1/models", None, "").status, 401);
    let a = w.call("HEAD", "/v1/chat/completions", Some(&auth), "");
    assert_eq!(a.status, 405);
    let a = w.call("POST", "/health", None, "");
    assert_eq!(a.header("allow"), Some("GET, HEAD, OPTIONS"));
    let m = w.call("GET", "/v1/models/openai%2Fgpt-4o", Some(&auth), "");
    assert_eq!(
        (m.status, m.json()["id"].clone()),
        (200, json!("openai/gpt-4o"))
    );
    let m = w.call(
        "GET",
        "/v1/models/anthropic/claude-sonnet-4-6",
        Some(&auth),
        "",
    );
    assert_eq!(m.json()["owned_by"], "anthropic");
    let m = w.call("GET", "/v1/models/nope/x", Some(&auth), "");
    assert_eq!(
        (m.status, m.json()["error"]["code"].clone()),
        (404, json!("model_not_found"))
    );
    assert_eq!(
        w.call("GET", "/v1/models/openai/gpt-4o", None, "").status,
        401
    );
}

/// An answer larger than the gateway reads is never held, and its size follows from the
/// request: a final 502 after one attempt (no retry, no fallback paying for the same generation
/// again), which does not count against the provider's breaker.
#[test]
fn an_answer_announced_over_the_limit_is_not_read_and_is_final() {
    let huge = || {
        let mut r = reply(200, "application/json", OK_JSON);
        if let Ok(r) = &mut r {
            r.content_length = Some(64 << 20);
        }
        r
    };
    let w = World::new();
    let (_, key) = w.new_key();
    for round in 0..4 {
        w.reply(huge());
        w.reply(reply(200, "application/json", OK_JSON));
        let a = w.chat_with_xai_fallback(&key);
        assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(
            a.header("x-switchyard-attempts"),
            Some("openai:response_too_large"),
            "round {round}: one attempt, then straight back"
        );
        let e = &a.json()["error"];
        assert_eq!(e["code"], "upstream_response_too_large");
        assert!(
            e["message"].as_str().unwrap().contains("over 24 MiB"),
            "{e}"
        );
        assert_eq!(a.header("x-should-retry"), Some("false"));
        assert_eq!(w.p.cancelled.get(), round + 1, "cancelled, not read");
        // The queued OK was not asked for: take it back for the next round.
        assert!(w.p.replies.borrow_mut().pop_front().is_some());
    }
    // Four oversized answers later, OpenAI is still tried first: no breaker opened.
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));

    // An error answer that size is not read either (its status still counts).
    w.reply(huge().map(|mut r| {
        r.status = 400;
        r
    }));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 400);
    assert_eq!(w.p.cancelled.get(), 5);
}

#[test]
fn an_answer_that_grows_over_the_limit_unannounced_is_dropped() {
    // No Content-Length (chunked, or compressed): the limit holds while the body is read.
    let unannounced = |status: u16, total: usize| {
        let piece = vec![b' '; 4 << 20];
        let body: FakeBody = (0..total / piece.len())
            .map(|_| Ok(piece.clone()))
            .collect();
        Ok(UpstreamResponse {
            status,
            content_type: Some("application/json".into()),
            retry_after: None,
            retry_after_ms: None,
            content_length: None,
            body,
        })
    };
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(unannounced(200, 28 << 20));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "upstream_response_too_large");
    assert_eq!(w.p.cancelled.get(), 1, "the oversized answer was dropped");
    assert_eq!(w.p.sent.borrow().len(), 1, "not asked for again");

    // Just under the limit is read (whitespace is valid JSON around the answer).
    let mut under = unannounced(200, 12 << 20);
    if let Ok(r) = &mut under {
        r.body.push_back(Ok(OK_JSON.as_bytes().to_vec()));
    }
    w.reply(under);
    assert_eq!(w.chat(&key, &gpt("")).status, 200);
    assert_eq!(w.p.cancelled.get(), 1);

    // An error body over 1 MiB: not held; the status still speaks (a 400 goes back as is).
    w.reply(unannounced(400, 8 << 20));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    assert_eq!(w.p.cancelled.get(), 2);
}

#[test]
fn upstream_errors_keep_status_and_message_and_hide_the_provider_key() {
    let w = World::new();
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    let msg = r#"{"error":{"message":"Rate limit reached for sk-openai-provider-secret","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    for _ in 0..2 {
        w.reply(Ok(UpstreamResponse {
            status: 429,
            content_type: Some("application/json".into()),
            retry_after: Some("3".into()),
            retry_after_ms: None,
            content_length: None,
            body: VecDeque::from([Ok(msg.as_bytes().to_vec())]),
        }));
    }
    let body = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let a = w.call("POST", "/v1/chat/completions", Some(&auth), body);
    assert_eq!(a.status, 429);
    assert_eq!(
        *w.p.slept.borrow(),
        vec![3000],
        "Retry-After honoured before the retry"
    );
    assert_eq!(a.header("retry-after"), Some("3"));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert_eq!(e["provider"], "openai");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit reached"));
    assert!(!String::from_utf8_lossy(&a.body).contains("sk-openai-provider-secret"));
    assert!(
        a.header("x-generation-id").unwrap().starts_with("gen_"),
        "errors carry the generation id too"
    );
    // no reply scripted: connection refused
    let a = w.call("POST", "/v1/chat/completions", Some(&auth), body);
    assert_eq!(a.status, 502);
    assert!(a.header("x-generation-id").is_some());
    assert_eq!(a.json()["error"]["provider"], "openai");
}

#[test]
fn a_provider_without_a_key_is_a_clear_configuration_error() {
    let w = World::new();
    let (_, key) = w.new_key();
    let a = w.chat(
        &key,
        r#"{"model":"groq/some-model","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(a.status, 503);
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GROQ_API_KEY"));
    // A retry cannot end it: the SDKs are told not to retry (they would, for any 5xx).
    assert_eq!(a.header("x-should-retry"), Some("false"));
    // A provider's own 503 is left to the client's retry policy.
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(503, "application/json", "{}"));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 503);
    assert_eq!(a.header("x-should-retry"), None);
    assert_eq!(a.json()["error"]["type"], "server_error");
}

#[test]
fn cors_for_allowed_origins_only_and_preflight() {
    let w = World::new();
    let pre = w.call_with(
        Inbound {
            method: "OPTIONS",
            url: "/v1/chat/completions",
            origin: Some("https://app.example"),
            ..Default::default()
        },
        "",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // Without CORS (and for any route) OPTIONS says what the route takes.
    let plain = World::with(&[("CORS_ORIGINS", "")]);
    let options = |url: &str| {
        plain.call_with(
            Inbound {
                method: "OPTIONS",
                url,
                ..Default::default()
            },
            "",
        )
    };
    assert_eq!(
        options("/v1/models").header("allow"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(
        options("/admin/keys").header("allow"),
        Some("GET, POST, HEAD, OPTIONS")
    );
    assert_eq!(options("/nowhere").header("allow"), None);
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let other = w.call_with(
        Inbound {
            method: "GET",
            url: "/health",
            origin: Some("https://evil.example"),
            ..Default::default()
        },
        "",
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    let ok = w.call_with(
        Inbound {
            method: "GET",
            url: "/health",
            origin: Some("https://app.example"),
            ..Default::default()
        },
        "",
    );
    let exposed = ok.header("access-control-expose-headers").unwrap();
    // What the SDKs read: the ids, routing, and when (or whether) to retry.
    for name in [
        "x-request-id",
        "x-generation-id",
        "x-switchyard-provider",
        "x-switchyard-attempts",
        "retry-after",
        "x-should-retry",
    ] {
        assert!(exposed.contains(name), "{name}: {exposed}");
    }
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PUT"));
    // Caches keep origins apart, allowed or not.
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert_eq!(other.header("vary"), Some("Origin"));

    // A preflight gets what the browser asks for (the SDKs send user-agent and helper headers
    // of their own); a list that is not header names gets the known set.
    let preflight = |asked: &str| {
        w.call_with(
            Inbound {
                method: "OPTIONS",
                url: "/v1/chat/completions",
                origin: Some("https://app.example"),
                cors_request_headers: Some(asked),
                ..Default::default()
            },
            "",
        )
    };
    let asked = "Authorization, Content-Type, User-Agent, X-Stainless-Helper-Method, openai-beta";
    let pre = preflight(asked);
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some(asked.to_ascii_lowercase().as_str())
    );
    assert_eq!(
        pre.header("vary"),
        Some("Origin, Access-Control-Request-Headers")
    );
    let odd = preflight("authorization, bad header\u{7f}");
    let allowed = odd.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("user-agent") && allowed.contains("x-stainless-helper-method"));
    assert!(!allowed.contains("bad"));
}

#[test]
fn no_response_ever_contains_a_secret() {
    let w = World::new();
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    let mut all = String::new();
    for (m, u, a, b) in [
        ("GET", "/admin/keys", Some(ADMIN), ""),
        ("GET", "/v1/models", Some(auth.as_str()), ""),
        ("POST", "/v1/chat/completions", Some(auth.as_str()), "{}"),
        (
            "POST",
            "/v1/chat/completions",
            Some(auth.as_str()),
            r#"{"model":"openai/gpt-4o","messages":[1]}"#,
        ),
        ("GET", "/admin/keys", Some("Bearer admin-secret-tokeX"), ""),
    ] {
        let ans = w.call(m, u, a, b);
        all.push_str(&String::from_utf8_lossy(&ans.body));
        for (_, v) in &ans.headers {
            all.push_str(v);
        }
    }
    for secret in [
        key.as_str(),
        "admin-secret-token",
        "sk-openai-provider-secret",
        "xai-provider-secret",
    ] {
        assert!(!all.contains(secret), "{secret} leaked");
    }
}

#[test]
fn paths_and_percent_decoding() {
    assert_eq!(
        path_of("https://h.example:8787/v1/models?x=1"),
        "/v1/models"
    );
    assert_eq!(path_of("http://h"), "/");
    assert_eq!(path_of("/a/b#c"), "/a/b");
    assert_eq!(percent_decode("openai%2Fgpt-4o"), "openai/gpt-4o");
    assert_eq!(percent_decode("a%2"), "a%2");
    assert_eq!(percent_decode("%zz%41"), "%zzA");
    assert_eq!(Route::of("/v1/models/"), Route::Models);
    assert_eq!(Route::of("/admin/keys/a/b"), Route::NotFound);
}

fn header_of(req: &UpstreamRequest, name: &str) -> Option<String> {
    req.headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn anthropic_json_is_translated_both_ways() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    w.reply(reply(
        200,
        "application/json",
        include_str!("../../tests/fixtures/anthropic/text.json"),
    ));
    let a = w.chat(&key, r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"max_tokens":100}"#);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "anthropic/claude-sonnet-4-6");
    assert_eq!(
        v["id"],
        a.header("x-generation-id").unwrap(),
        "the completion id is the generation id"
    );
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sent = w.p.sent.borrow();
    assert_eq!(sent[0].url, "https://api.anthropic.com/v1/messages");
    assert_eq!(
        header_of(&sent[0], "x-api-key").as_deref(),
        Some("sk-ant-provider-secret")
    );
    assert!(header_of(&sent[0], "anthropic-version").is_some());
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["model"], "claude-sonnet-4-6");
    assert_eq!(
        body["system"][0]["text"]
            .as_str()
            .or(body["system"].as_str()),
        Some("Be brief.")
    );
    assert_eq!(body["max_tokens"], 100);
}

#[test]
fn anthropic_streams_are_translated_to_openai_chunks() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    w.reply(reply(
        200,
        "text/event-stream",
        include_str!("../../tests/fixtures/anthropic/basic_text.sse"),
    ));
    let a = w.chat(&key, r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#);
    assert_eq!(a.status, 200);
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    assert!(events.last().unwrap().is_done());
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = chunks
        .iter()
        .find(|c| c["usage"].is_object())
        .expect("a usage chunk");
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    // The usage chunk is the last, and the routing metadata rides in it (no extra chunk).
    let last = chunks.last().unwrap();
    assert_eq!(last, usage);
    assert_eq!(last["choices"], json!([]));
    assert_eq!(
        last["providerMetadata"]["gateway"]["routing"]["finalProvider"],
        "anthropic"
    );
    assert_eq!(
        chunks.iter().filter(|c| c["usage"].is_object()).count(),
        1,
        "usage sent once"
    );
    let sent = w.p.sent.borrow();
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["stream"], true);
}

#[test]
fn a_translated_answer_from_a_fallback_model_names_the_model_that_served() {
    let w = World::with(&[
        ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
        ("RETRY_MAX_ATTEMPTS", "1"),
    ]);
    let (_, key) = w.new_key();
    let body = r#"{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["anthropic/claude-sonnet-4-6"]}}STREAM}"#;
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(
        200,
        "application/json",
        include_str!("../../tests/fixtures/anthropic/text.json"),
    ));
    let a = w.chat(&key, &body.replace("STREAM", ""));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,anthropic:200")
    );
    assert_eq!(a.json()["model"], "anthropic/claude-sonnet-4-6");
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(
        200,
        "text/event-stream",
        include_str!("../../tests/fixtures/anthropic/basic_text.sse"),
    ));
    let a = w.chat(&key, &body.replace("STREAM", r#","stream":true"#));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,anthropic:200")
    );
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    assert!(events.len() > 3 && events.last().unwrap().is_done());
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(chunk["model"], "anthropic/claude-sonnet-4-6", "{}", e.data);
        text += chunk["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or("");
    }
    assert!(!text.is_empty());
}

#[test]
fn every_chunk_of_a_translated_stream_has_the_same_created() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    let sse = include_str!("../../tests/fixtures/anthropic/basic_text.sse");
    let pieces: Vec<&str> = sse.split_inclusive("\n\n").collect();
    w.reply(stream_reply(&pieces, false));
    let start = w.p.now.get() / 1000;
    // Each event a second and a half after the last: the first content comes seconds after
    // the request, the routing chunk later still.
    w.p.chunk_ms.set(1500);
    let a = w.chat(&key, r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"stream":true}"#);
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    let created: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["created"].clone())
        .collect();
    assert!(created.len() > 3);
    assert!(created.iter().all(|c| *c == json!(start)), "{created:?}");
}

#[test]
fn anthropic_overload_is_a_503_and_unsupported_parameters_are_refused() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    for _ in 0..2 {
        w.reply(reply(
            529,
            "application/json",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ));
    }
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    let a = w.chat(
        &key,
        &format!(r#"{{"model":"anthropic/claude-sonnet-4-6",{msgs}}}"#),
    );
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["provider"], "anthropic");
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("anthropic:529,anthropic:529"),
        "retried once"
    );
    let a = w.chat(
        &key,
        &format!(r#"{{"model":"anthropic/claude-sonnet-4-6",{msgs},"logit_bias":{{"1":2}}}}"#),
    );
    assert_eq!(
        (a.status, a.json()["error"]["param"].clone()),
        (400, json!("logit_bias"))
    );
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("anthropic:unsupported_request"),
        "a refusal is not reported as a provider status"
    );
    assert_eq!(
        w.p.sent.borrow().len(),
        2,
        "the refused request never reached the provider"
    );
}

#[test]
fn vertex_trades_a_signed_assertion_for_a_token_once_and_reuses_it() {
    let sa = include_str!("../../tests/fixtures/vertex/test_service_account.json");
    let w = World::with(&[
        ("VERTEX_API_KEY", sa),
        ("VERTEX_PROJECT", "proj-1"),
        ("VERTEX_LOCATION", "us-east5"),
        ("VERTEX_TOKEN_URL", "http://127.0.0.1:9/token"),
    ]);
    let (_, key) = w.new_key();
    let token = r#"{"access_token":"ya29.test-token","expires_in":3600,"token_type":"Bearer"}"#;
    let answer = include_str!("../../tests/fixtures/anthropic/text.json");
    for r in [
        reply(200, "application/json", token),
        reply(200, "application/json", answer),
        reply(200, "application/json", answer),
    ] {
        w.reply(r);
    }
    // Claude on Vertex only (no ANTHROPIC_API_KEY), twice.
    for _ in 0..2 {
        let a = w.chat(&key, r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("x-switchyard-provider"), Some("vertex"));
    }
    let sent = w.p.sent.borrow();
    assert_eq!(sent.len(), 3, "one token exchange, two calls");
    assert_eq!(sent[0].url, "http://127.0.0.1:9/token");
    assert!(String::from_utf8_lossy(&sent[0].body).contains("assertion="));
    assert_eq!(
        sent[1].url,
        "https://us-east5-aiplatform.googleapis.com/v1/projects/proj-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:rawPredict"
    );
    assert_eq!(
        header_of(&sent[1], "authorization").as_deref(),
        Some("Bearer ya29.test-token")
    );
    let body: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
    assert!(body.get("model").is_none());
}

/// The token exchange's failures are told apart: Google's endpoint in trouble is retried; a
/// token Vertex refuses is dropped and exchanged again; unusable settings reach no provider and
/// let the next target serve.
#[test]
fn vertex_token_trouble_is_retried_a_refused_token_renewed_and_bad_settings_skipped() {
    let sa = include_str!("../../tests/fixtures/vertex/test_service_account.json");
    let vertex = |extra: &[(&'static str, &'static str)]| {
        let mut vars = vec![
            ("VERTEX_API_KEY", sa),
            ("VERTEX_PROJECT", "proj-1"),
            ("VERTEX_TOKEN_URL", "http://127.0.0.1:9/token"),
        ];
        vars.extend_from_slice(extra);
        World::with(&vars)
    };
    let token = |t: &str| {
        reply(
            200,
            "application/json",
            &format!(r#"{{"access_token":"{t}","expires_in":3600}}"#),
        )
    };
    let answer = include_str!("../../tests/fixtures/anthropic/text.json");
    let claude =
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}]}"#;

    let w = vertex(&[]);
    let (_, key) = w.new_key();
    // 503 from the token endpoint: a retry, not a refused account.
    w.reply(reply(
        503,
        "application/json",
        r#"{"error":"backend_error"}"#,
    ));
    w.reply(token("ya29.one"));
    w.reply(reply(200, "application/json", answer));
    let a = w.chat(&key, claude);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:connection_failed,vertex:200")
    );
    // Vertex refuses the cached token: it is dropped, and the same request exchanges a new one
    // and serves; a fresh token refused is the account's problem (502, not retried by SDKs).
    let unauthenticated = || {
        reply(
            401,
            "application/json",
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
        )
    };
    w.reply(unauthenticated());
    w.reply(token("ya29.two"));
    w.reply(reply(200, "application/json", answer));
    let a = w.chat(&key, claude);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:token_refused,vertex:200")
    );
    let sent = w.p.sent.borrow();
    assert_eq!(
        header_of(&sent[sent.len() - 1], "authorization").as_deref(),
        Some("Bearer ya29.two")
    );
    drop(sent);
    // The refused cached token is not one of the target's tries, and nothing waits for it: a
    // 503 after it is still retried.
    w.p.slept.borrow_mut().clear();
    w.reply(unauthenticated());
    w.reply(token("ya29.four"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(200, "application/json", answer));
    let a = w.chat(&key, claude);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:token_refused,vertex:503,vertex:200")
    );
    assert_eq!(w.p.slept.borrow().len(), 1, "one backoff: the 503's");
    // The same as a half-open trial: the refused cached token does not send the trial behind
    // the other providers (its own breaker reads open while it runs).
    let w = vertex(&[
        ("ANTHROPIC_API_KEY", "sk-ant-secret"),
        ("BREAKER_THRESHOLD", "1"),
    ]);
    let (_, key) = w.new_key();
    let vertex_first = r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"order":["vertex","anthropic"]}}}"#;
    w.reply(token("ya29.cached"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(200, "application/json", answer));
    let a = w.chat(&key, vertex_first);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:503,anthropic:200")
    );
    w.p.now.set(w.p.now.get() + 31_000); // past the cool-down, the token still fresh
    w.reply(unauthenticated());
    w.reply(token("ya29.new"));
    w.reply(reply(200, "application/json", answer));
    let a = w.chat(&key, vertex_first);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:token_refused,vertex:200"),
        "{}",
        a.text()
    );
    let w = vertex(&[]);
    let (_, key) = w.new_key();
    w.reply(token("ya29.two"));
    w.reply(reply(200, "application/json", answer));
    assert_eq!(w.chat(&key, claude).status, 200);
    w.p.now.set(w.p.now.get() + 3_600_000); // the cached token has expired
    w.reply(token("ya29.three"));
    w.reply(unauthenticated());
    let a = w.chat(&key, claude);
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["code"], "upstream_authentication_failed");

    // No project anywhere: nothing is sent to Vertex, the fallback model serves.
    let w = World::with(&[("VERTEX_API_KEY", r#"{"type":"service_account"}"#)]);
    let (_, key) = w.new_key();
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:provider_not_configured,openai:200")
    );
    assert!(w.p.slept.borrow().is_empty(), "no backoff for settings");
    // A project that is no project id would change the URL's path: not called either.
    let sa = include_str!("../../tests/fixtures/vertex/test_service_account.json");
    let w = World::with(&[("VERTEX_API_KEY", sa), ("VERTEX_PROJECT", "projects/p1")]);
    let (_, key) = w.new_key();
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("vertex:provider_not_configured,openai:200")
    );
    assert_eq!(w.p.sent.borrow().len(), 1, "nothing went to Vertex");
}

const CHUNK_ROLE: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const CHUNK_HI: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n";
const CHUNK_STOP: &str = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
/// A whole short answer: role, "Hi", stop, [DONE].
const OK_STREAM: &[&str] = &[CHUNK_ROLE, CHUNK_HI, CHUNK_STOP, "data: [DONE]\n\n"];
const OK_JSON: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;

fn gpt(extra: &str) -> String {
    format!(r#"{{"model":"openai/gpt-4o","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
}

fn routing_of(a: &Answer) -> Value {
    a.json()["providerMetadata"]["gateway"]["routing"].clone()
}

#[test]
fn a_500_is_retried_on_the_same_provider_with_backoff() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        500,
        "application/json",
        r#"{"error":{"message":"boom"}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:500,openai:200")
    );
    assert_eq!(w.p.slept.borrow().len(), 1, "one backoff");
    let r = routing_of(&a);
    assert_eq!(r["finalProvider"], "openai");
    assert_eq!(r["attempts"][0]["status"], 500);
    assert_eq!(a.json()["id"], "chatcmpl-1", "the provider's body is kept");
}

#[test]
fn fallback_models_serve_when_the_primary_keeps_failing_and_options_stay_home() {
    let w = World::new();
    let (_, key) = w.new_key();
    for _ in 0..2 {
        w.reply(reply(503, "application/json", "{}"));
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-provider"), Some("xai"));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,xai:200")
    );
    let sent = w.p.sent.borrow();
    assert!(sent[2].url.starts_with("https://api.x.ai/"));
    assert!(!String::from_utf8_lossy(&sent[2].body).contains("providerOptions"));
    assert!(String::from_utf8_lossy(&sent[2].body).contains(r#""model":"grok-3""#));
    assert_eq!(routing_of(&a)["fallbacksAvailable"], json!(["xai"]));
}

#[test]
fn a_non_retryable_error_returns_at_once() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        400,
        "application/json",
        r#"{"error":{"message":"bad","param":"temperature"}}"#,
    ));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 400);
    assert_eq!(w.p.sent.borrow().len(), 1, "no retry, no fallback");
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:400"));
}

#[test]
fn timeouts_and_connection_failures_move_on() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    w.reply(Err(FetchError::Timeout));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        &gpt(r#","providerOptions":{"gateway":{"models":["xai/grok-3"],"timeoutMs":250}}"#),
    );
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:timeout,xai:200")
    );
    assert_eq!(routing_of(&a)["attempts"][0]["latencyMs"], 250);
    // everything times out: 504
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    w.reply(Err(FetchError::Timeout));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 504);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:timeout"));
}

#[test]
fn malformed_json_is_retried() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(200, "application/json", "{not json"));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:malformed_response,openai:200")
    );
}

#[test]
fn a_stream_that_dies_before_content_falls_back_and_the_client_sees_one_clean_stream() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(stream_reply(&[CHUNK_ROLE], true));
    w.reply(stream_reply(&[CHUNK_ROLE], true));
    w.reply(stream_reply(OK_STREAM, false));
    let a = w.stream_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-provider"), Some("xai"));
    let text = String::from_utf8(a.body.clone()).unwrap();
    assert_eq!(
        text.matches("\"role\":\"assistant\"").count(),
        1,
        "no leftovers of the failed attempts"
    );
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    assert!(events.last().unwrap().is_done());
    let trailer: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(
        trailer["providerMetadata"]["gateway"]["routing"]["finalProvider"],
        "xai"
    );
    assert_eq!(
        w.p.cancelled.get(),
        2,
        "the failed attempts were cancelled upstream"
    );
}

#[test]
fn the_routing_chunk_of_a_passed_through_stream_carries_the_providers_id_model_and_created() {
    let w = World::new();
    let (_, key) = w.new_key();
    let chunk = |delta: &str, finish: &str| {
        format!("data: {{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    let pieces = [
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Hi"}"#, "null"),
        chunk("{}", r#""stop""#),
        "data: [DONE]\n\n".to_owned(),
    ];
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    w.reply(stream_reply(&pieces, false));
    let a = w.chat(&key, &gpt(r#","stream":true"#));
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    let trailer: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert!(trailer["providerMetadata"]["gateway"]["routing"].is_object());
    assert_eq!(
        (&trailer["id"], &trailer["model"], &trailer["created"]),
        (
            &json!("chatcmpl-9x"),
            &json!("gpt-4o-2024-08-06"),
            &json!(1718000000)
        )
    );
    // A provider whose chunks lack them: the gateway's own.
    w.reply(stream_reply(OK_STREAM, false));
    let a = w.chat(&key, &gpt(r#","stream":true"#));
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    let trailer: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(trailer["id"], "c");
    assert_eq!(trailer["model"], "openai/gpt-4o");
    assert_eq!(trailer["created"], json!(w.p.now.get() / 1000));
}

#[test]
fn a_stream_that_dies_after_content_ends_with_an_error_event_and_no_fallback() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI], true));
    let a = w.stream_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    let events = crate::sse::tests::decode_pieces(&[&a.body]);
    let n = events.len();
    assert!(events[n - 1].is_done());
    let err: Value = serde_json::from_str(&events[n - 2].data).unwrap();
    assert_eq!(err["error"]["code"], "stream_interrupted");
    let trailer: Value = serde_json::from_str(&events[n - 3].data).unwrap();
    assert!(trailer["providerMetadata"]["gateway"]["routing"].is_object());
    assert!(
        events
            .iter()
            .all(|e| !e.data.contains("finish_reason\":\"stop")),
        "never a fake finish"
    );
    assert_eq!(
        w.p.sent.borrow().len(),
        1,
        "no fallback once content was sent"
    );
}

#[test]
fn a_key_refused_inside_a_stream_is_the_operators_502_and_no_secret_is_echoed() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    w.reply(stream_reply(
        &["data: {\"error\":{\"code\":401,\"message\":\"Invalid key sk-openai-provider-secret\"}}\n\n"],
        false,
    ));
    let a = w.chat(&key, &gpt(r#","stream":true"#));
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "upstream_authentication_failed");
    assert!(
        e["message"].as_str().unwrap().contains("OPENAI_API_KEY"),
        "{e}"
    );
    assert!(!String::from_utf8_lossy(&a.body).contains("sk-openai-provider-secret"));
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:401"));
    // Any other error's message is scrubbed of the key too.
    w.reply(stream_reply(
        &["data: {\"error\":{\"code\":\"server_error\",\"message\":\"boom for sk-openai-provider-secret\"}}\n\n"],
        false,
    ));
    let a = w.chat(&key, &gpt(r#","stream":true"#));
    assert!(!String::from_utf8_lossy(&a.body).contains("sk-openai-provider-secret"));
    assert!(String::from_utf8_lossy(&a.body).contains("boom for"));
}

#[test]
fn an_in_stream_error_before_content_is_skipped() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    // An error event before any content, or an event that is not JSON (the client's SDK would
    // fail on it): the attempt fails, the fallback serves; once content has started, events
    // pass as sent.
    for first in [
        "data: {\"error\":{\"message\":\"overloaded\",\"code\":\"server_overloaded\"}}\n\n",
        "data: {\"choices\":[{\"delta\n\n",
    ] {
        // The answer follows the bad event: only judging the event fails the attempt.
        w.reply(stream_reply(
            &[first, CHUNK_HI, CHUNK_STOP, "data: [DONE]\n\n"],
            false,
        ));
        w.reply(stream_reply(
            &[
                CHUNK_HI,
                "data: not json\n\n",
                CHUNK_STOP,
                "data: [DONE]\n\n",
            ],
            false,
        ));
        let a = w.stream_with_xai_fallback(&key);
        assert_eq!(
            a.header("x-switchyard-attempts"),
            Some("openai:stream_error,xai:200"),
            "{first}"
        );
        let body = String::from_utf8_lossy(&a.body);
        assert!(
            !body.contains("overloaded") && !body.contains("delta\n"),
            "{body}"
        );
        assert!(body.contains("data: not json\n\n"), "{body}");
    }
    // Keep-alive lines with empty data are no failure.
    w.reply(stream_reply(
        &["data: \n\n", CHUNK_HI, CHUNK_STOP, "data: [DONE]\n\n"],
        false,
    ));
    let a = w.chat(&key, &gpt(r#","stream":true"#));
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));
}

#[test]
fn a_wait_given_only_as_retry_after_ms_reaches_the_client_in_seconds() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    w.reply(Ok(UpstreamResponse {
        status: 429,
        content_type: None,
        retry_after: None,
        retry_after_ms: Some("1500".into()),
        content_length: None,
        body: VecDeque::new(),
    }));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), Some("2"));
}

#[test]
fn a_long_retry_after_moves_to_the_next_provider_instead_of_waiting() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(Ok(UpstreamResponse {
        status: 429,
        content_type: None,
        retry_after: Some("120".into()),
        retry_after_ms: None,
        content_length: None,
        body: VecDeque::new(),
    }));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:429,xai:200")
    );
    assert!(w.p.slept.borrow().is_empty());
}

#[test]
fn a_breaker_opens_after_repeated_failures_and_requests_stop_paying_for_it() {
    let w = World::with(&[
        ("BREAKER_THRESHOLD", "2"),
        ("BREAKER_COOLDOWN_MS", "1000"),
        ("RETRY_MAX_ATTEMPTS", "1"),
    ]);
    let (_, key) = w.new_key();
    let opts = r#","providerOptions":{"gateway":{"models":["xai/grok-3"]}}"#;
    for _ in 0..2 {
        w.reply(reply(503, "application/json", "{}"));
        w.reply(reply(200, "application/json", OK_JSON));
        w.chat(&key, &gpt(opts));
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(opts));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("xai:200"),
        "openai skipped while open"
    );
    w.p.now.set(w.p.now.get() + 1001);
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(opts));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:200"),
        "half-open trial closes it"
    );
}

/// A client that asks for a 1 ms `timeoutMs` times out by its own choice: that says nothing
/// about the provider, so the breaker every request shares stays closed; timeouts with the
/// gateway's own per-attempt time still open it.
#[test]
fn timeouts_a_client_shortened_do_not_open_the_shared_breaker() {
    let w = World::with(&[
        ("BREAKER_THRESHOLD", "2"),
        ("BREAKER_COOLDOWN_MS", "60000"),
        ("RETRY_MAX_ATTEMPTS", "1"),
    ]);
    let (_, key) = w.new_key();
    for _ in 0..3 {
        w.reply(Err(FetchError::Timeout));
        let a = w.chat(
            &key,
            &gpt(r#","providerOptions":{"gateway":{"timeoutMs":1}}"#),
        );
        assert_eq!(a.status, 504);
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:200"),
        "openai still first: its breaker did not open"
    );

    // The same timeouts on the gateway's own time open it.
    for _ in 0..2 {
        w.reply(Err(FetchError::Timeout));
        assert_eq!(w.chat(&key, &gpt("")).status, 504);
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.header("x-switchyard-attempts"), Some("xai:200"));
}

#[test]
fn key_routing_defaults_apply_and_requests_override_them() {
    let w = World::new();
    let created = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        r#"{"name":"r","routing":{"models":["xai/grok-3"],"timeoutMs":1000}}"#,
    );
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.json()["routing"]["models"], json!(["xai/grok-3"]));
    let key = created.json()["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        w.reply(reply(503, "application/json", "{}"));
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(
        a.header("x-switchyard-provider"),
        Some("xai"),
        "the key's fallback applied"
    );
    // The key's timeout applies, and a request's own wins over it.
    for (opts, timeout) in [
        ("", 1000),
        (r#","providerOptions":{"gateway":{"timeoutMs":250}}"#, 250),
    ] {
        w.reply(Err(FetchError::Timeout));
        w.reply(Err(FetchError::Timeout));
        w.reply(reply(200, "application/json", OK_JSON));
        let a = w.chat(&key, &gpt(opts));
        let routing = &a.json()["providerMetadata"]["gateway"]["routing"];
        assert_eq!(routing["attempts"][0]["errorKind"], "timeout", "{routing}");
        assert_eq!(routing["attempts"][0]["latencyMs"], timeout, "{routing}");
        assert_eq!(routing["finalProvider"], "xai");
    }
    // A request's `only` wins over the key's fallback model: xai is never asked.
    let before = w.p.sent.borrow().len();
    for _ in 0..2 {
        w.reply(reply(503, "application/json", "{}"));
    }
    let a = w.chat(
        &key,
        &gpt(r#","providerOptions":{"gateway":{"only":["openai"]}}"#),
    );
    assert_eq!(a.status, 503);
    let sent = w.p.sent.borrow();
    assert_eq!(sent.len() - before, 2);
    assert!(sent[before..]
        .iter()
        .all(|r| r.url.contains("127.0.0.1:9999")));
    drop(sent);
    let bad = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        r#"{"name":"r","routing":{"only":["nope"]}}"#,
    );
    assert_eq!(
        (bad.status, bad.json()["error"]["param"].clone()),
        (400, json!("routing.only"))
    );
}

#[test]
fn idempotent_requests_replay_the_first_outcome_and_refuse_a_different_body() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(200, "application/json", OK_JSON));
    let auth = bearer(&key);
    let with_key = |idempotency_key: &str, body: &str| {
        w.call_with(
            Inbound {
                method: "POST",
                url: "/v1/chat/completions",
                authorization: Some(&auth),
                idempotency_key: Some(idempotency_key),
                ..Default::default()
            },
            body,
        )
    };
    let req = |body: &str| with_key("order-42", body);
    let first = req(&gpt(""));
    assert_eq!(first.status, 200);
    let again = req(&gpt(""));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("x-switchyard-idempotent-replay"), Some("true"));
    assert_eq!(w.p.sent.borrow().len(), 1, "the provider was called once");
    assert_eq!(
        again.header("x-generation-id"),
        first.header("x-generation-id"),
        "the replay keeps the first answer's generation id"
    );
    assert_eq!(
        again
            .headers
            .iter()
            .filter(|(n, _)| *n == "x-generation-id")
            .count(),
        1
    );
    let other = req(&gpt(r#","seed":1"#));
    assert_eq!(
        (other.status, other.json()["error"]["code"].clone()),
        (409, json!("idempotency_key_reused"))
    );
    assert_eq!(other.header("x-should-retry"), Some("false"));

    // A failure the operator can end (the provider refused the gateway's credential) is not
    // kept: once fixed, the same Idempotency-Key gets a real answer.
    let req2 = |body: &str| with_key("order-43", body);
    w.reply(reply(
        403,
        "application/json",
        r#"{"error":{"message":"Project does not have access","type":"invalid_request_error"}}"#,
    ));
    assert_eq!(req2(&gpt("")).status, 403);
    w.reply(reply(200, "application/json", OK_JSON));
    let fixed = req2(&gpt(""));
    assert_eq!(fixed.status, 200);
    assert_eq!(fixed.header("x-switchyard-idempotent-replay"), None);
    // A refusal of the body itself is kept.
    let req3 = |body: &str| with_key("order-44", body);
    w.reply(reply(
        400,
        "application/json",
        r#"{"error":{"message":"bad messages","type":"invalid_request_error"}}"#,
    ));
    assert_eq!(req3(&gpt("")).status, 400);
    let replayed = req3(&gpt(""));
    assert_eq!(replayed.status, 400);
    assert_eq!(
        replayed.header("x-switchyard-idempotent-replay"),
        Some("true")
    );
    // A refusal by a fallback after the primary failed in a way a retry may end is not kept:
    // the primary may serve the same body next time.
    let req4 = |body: &str| with_key("order-45", body);
    let with_fallback = gpt(r#","providerOptions":{"gateway":{"models":["xai/grok-3"]}}"#);
    for _ in 0..2 {
        w.reply(reply(503, "application/json", "{}"));
    }
    w.reply(reply(
        400,
        "application/json",
        r#"{"error":{"message":"context too long for grok","type":"invalid_request_error"}}"#,
    ));
    assert_eq!(req4(&with_fallback).status, 400);
    w.reply(reply(200, "application/json", OK_JSON));
    let served = req4(&with_fallback);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("x-switchyard-idempotent-replay"), None);
}

/// Several keys for one provider: a rate-limited key moves the request to the next key of the
/// same provider, the routing names credentials by number (never by value), each key has its own
/// breaker, and requests spread over the keys.
#[test]
fn several_credentials_for_one_provider_share_the_load_and_cover_for_each_other() {
    let w = World::with(&[
        ("OPENAI_API_KEY_2", "sk-openai-second-secret"),
        ("RETRY_MAX_ATTEMPTS", "1"),
        ("BREAKER_THRESHOLD", "1"),
    ]);
    let (_, key) = w.new_key();
    let mut r = reply(
        429,
        "application/json",
        r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    if let Ok(resp) = r.as_mut() {
        resp.retry_after = Some("30".into());
    }
    w.reply(r);
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let auth = |i: usize| header_of(&w.p.sent.borrow()[i], "authorization").unwrap();
    let (first, second) = (auth(0), auth(1));
    assert_ne!(first, second, "the retry used the other key");
    let limited = if first.ends_with("sk-openai-provider-secret") {
        1
    } else {
        2
    };
    let served = 3 - limited;
    assert_eq!(
        a.header("x-switchyard-attempts").unwrap(),
        format!("openai#{limited}:429,openai#{served}:200")
    );
    let routing = routing_of(&a);
    assert_eq!(routing["attempts"][0]["credential"], limited);
    assert_eq!(routing["attempts"][1]["credential"], served);
    assert_eq!(routing["finalProvider"], "openai");
    let text = String::from_utf8_lossy(&a.body);
    assert!(!text.contains("secret"), "no key in the answer: {text}");

    // The limited key's breaker is open: the next requests go to the other key first.
    for _ in 0..3 {
        w.reply(reply(200, "application/json", OK_JSON));
        let a = w.chat(&key, &gpt(""));
        assert_eq!(
            a.header("x-switchyard-attempts").unwrap(),
            format!("openai#{served}:200")
        );
    }

    // With both keys healthy, requests spread over both (the plan's tests check the shares; the
    // fake's random bytes are a counter, not uniform).
    let w = World::with(&[("OPENAI_API_KEY_2", "sk-openai-second-secret")]);
    let (_, key) = w.new_key();
    for _ in 0..40 {
        w.reply(reply(200, "application/json", OK_JSON));
        w.chat(&key, &gpt(""));
    }
    let second =
        w.p.sent
            .borrow()
            .iter()
            .filter(|r| {
                header_of(r, "authorization")
                    .unwrap()
                    .ends_with("second-secret")
            })
            .count();
    assert!(
        (5..=35).contains(&second),
        "second key served {second} of 40"
    );
}

type Reply = Result<UpstreamResponse<FakeBody>, FetchError>;

/// A provider with two keys: the first key tried is refused (`status`), the other serves.
/// Which key goes first is drawn at random, so the attempts may come in either order.
fn first_key_refused_second_serves(
    w: &World,
    key: &str,
    body: &str,
    (refused, served): (Reply, Reply),
    provider: &str,
    status: u16,
) -> Answer {
    w.reply(refused);
    w.reply(served);
    let a = w.chat(key, body);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let attempts = a.header("x-switchyard-attempts").unwrap().to_owned();
    assert!(
        attempts == format!("{provider}#1:{status},{provider}#2:200")
            || attempts == format!("{provider}#2:{status},{provider}#1:200"),
        "{attempts}"
    );
    a
}

#[test]
fn an_account_that_cannot_pay_moves_on_and_is_the_operators_502_when_nothing_serves() {
    let broke = || {
        reply(
            402,
            "application/json",
            r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
        )
    };
    let w = World::with(&[("OPENAI_API_KEY_2", "sk-openai-second-secret")]);
    let (_, key) = w.new_key();
    // The provider's other key serves.
    first_key_refused_second_serves(
        &w,
        &key,
        &gpt(""),
        (broke(), reply(200, "application/json", OK_JSON)),
        "openai",
        402,
    );
    // Both keys' accounts cannot pay: the fallback model serves (the request is not at fault).
    w.reply(broke());
    w.reply(broke());
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a
        .header("x-switchyard-attempts")
        .unwrap()
        .ends_with("xai:200"));
    assert_eq!(
        routing_of(&a)["attempts"][0]["errorKind"],
        "payment_required"
    );
    // Nothing else to try: the operator's 502, final, naming the variable.
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(broke());
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502, "{}", a.text());
    let e = &a.json()["error"];
    assert_eq!(e["code"], "upstream_payment_required");
    assert_eq!(a.header("x-should-retry"), Some("false"));
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("OPENAI_API_KEY") && m.contains("Insufficient Balance"),
        "{m}"
    );
    assert_eq!(
        w.p.sent.borrow().len(),
        1,
        "not asked again on the same key"
    );
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:402"));
}

/// OpenAI's 429 `insufficient_quota` and Anthropic's 400 "credit balance is too low" are the
/// same as a 402: no retry on that key, the next target serves, else the operator's 502.
#[test]
fn quota_exhausted_and_low_credit_are_accounts_that_cannot_pay() {
    let quota = || {
        reply(
            429,
            "application/json",
            r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        )
    };
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(quota());
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:429,xai:200")
    );
    assert_eq!(
        routing_of(&a)["attempts"][0]["errorKind"],
        "payment_required"
    );
    assert!(
        w.p.slept.borrow().is_empty(),
        "no backoff: a retry would not end it"
    );
    w.reply(quota());
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "upstream_payment_required");
    assert_eq!(a.header("x-should-retry"), Some("false"));
    // A rate limit is still a rate limit.
    w.reply(reply(
        429,
        "application/json",
        r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:429,openai:200")
    );

    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-secret")]);
    let (_, key) = w.new_key();
    w.reply(reply(
        400,
        "application/json",
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("anthropic:400,openai:200")
    );
    // The same words quoted from the request are the request's fault: final, not counted.
    w.reply(reply(
        400,
        "application/json",
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"stop_sequences: 'Your credit balance is too low' is not allowed"}}"#,
    ));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.header("x-switchyard-attempts"), Some("anthropic:400"));
}

/// xAI answers a wrong key with a 400 (OpenAI's words, part of the key): the gateway's key was
/// refused, as for a 401: the provider's next key, never the provider's message.
#[test]
fn xais_400_for_a_wrong_key_is_a_refused_credential() {
    let refused = || {
        reply(
            400,
            "application/json",
            r#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***et. You can obtain an API key from https://console.x.ai."}"#,
        )
    };
    let w = World::with(&[("XAI_API_KEY_2", "xai-second-secret")]);
    let (_, key) = w.new_key();
    let grok = r#"{"model":"xai/grok-3","messages":[{"role":"user","content":"hi"}]}"#;
    first_key_refused_second_serves(
        &w,
        &key,
        grok,
        (refused(), reply(200, "application/json", OK_JSON)),
        "xai",
        400,
    );
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(refused());
    let a = w.chat(&key, grok);
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "upstream_authentication_failed");
    let m = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(m.contains("XAI_API_KEY") && !m.contains("xa***"), "{m}");
    // As xAI has also sent it, percent-encoded.
    w.reply(reply(
        400,
        "application/json",
        r#"{"code":"Client specified an invalid argument","error":"Incorrect%20API%20key%20provided:%20xa***et."}"#,
    ));
    let a = w.chat(&key, grok);
    assert_eq!(a.json()["error"]["code"], "upstream_authentication_failed");
    // A client's own words quoted back in a 400 are the request's fault: no key counted.
    let w = World::with(&[("BREAKER_THRESHOLD", "1")]);
    let (_, key) = w.new_key();
    w.reply(reply(
        400,
        "application/json",
        r#"{"error":{"message":"Invalid value: 'Incorrect API key provided'. Supported values are: 'low', 'medium', and 'high'.","type":"invalid_request_error","param":"reasoning_effort","code":"invalid_value"}}"#,
    ));
    let a = w.chat(
        &key,
        &gpt(r#","reasoning_effort":"Incorrect API key provided""#),
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["error"]["code"], "invalid_value");
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:400"));
    assert!(!w.gw.breakers.borrow().is_open(("openai", 0), w.p.now.get()));
}

#[test]
fn groqs_flex_capacity_498_is_retried() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        498,
        "application/json",
        r#"{"error":{"message":"Flex tier capacity exceeded","type":"capacity_exceeded"}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:498,openai:200")
    );
}

/// A provider that refuses one of the gateway's keys (401/403) is tried with its next key; with
/// a single key, or none left, the refusal goes back to the client as before, and no other
/// provider is burned.
#[test]
fn a_refused_key_moves_to_the_providers_next_key_only() {
    let refused = || {
        reply(
            401,
            "application/json",
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        )
    };
    let w = World::with(&[("OPENAI_API_KEY_2", "sk-openai-second-secret")]);
    let (_, key) = w.new_key();
    first_key_refused_second_serves(
        &w,
        &key,
        &gpt(r#","providerOptions":{"gateway":{"models":["xai/grok-3"]}}"#),
        (refused(), reply(200, "application/json", OK_JSON)),
        "openai",
        401,
    );

    // Both keys refused: the refusal is the answer; the fallback model's provider is not tried.
    w.reply(refused());
    w.reply(refused());
    let a = w.chat_with_xai_fallback(&key);
    // Not a 401 to the client (its gateway key is fine): a 502 naming the refused credential's
    // variable, never the provider's message (which shows part of the key).
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "upstream_authentication_failed");
    assert_eq!(e["provider"], "openai");
    assert_eq!(a.header("x-should-retry"), Some("false"));
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("OPENAI_API_KEY") && !m.contains("Incorrect API key"),
        "{m}"
    );
    assert!(!a.header("x-switchyard-attempts").unwrap().contains("xai"));
    assert!(!String::from_utf8_lossy(&a.body).contains("secret"));

    // One key: as before, straight back (one attempt, the refusal recorded as the provider's 401).
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        401,
        "application/json",
        r#"{"error":{"message":"Incorrect API key provided: sk-proj-****************abcd.","code":"invalid_api_key"}}"#,
    ));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 502);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:401"));
    assert!(
        !String::from_utf8_lossy(&a.body).contains("abcd"),
        "no part of the key"
    );
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credential (OPENAI_API_KEY)"));
}

#[test]
fn a_stream_that_sends_a_megabyte_before_any_content_fails_over() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    let empty = "data: {\"choices\":[{\"index\":0,\"delta\":{}}]}\n\n".repeat(2000);
    let pieces: Vec<&str> = std::iter::repeat_n(empty.as_str(), 20).collect();
    w.reply(stream_reply(&pieces, false));
    w.reply(stream_reply(OK_STREAM, false));
    let a = w.stream_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:stream_failed,xai:200")
    );
    assert!(a.body.len() < 100_000, "the held events were dropped");
}

#[test]
fn a_translated_answer_or_an_error_too_complex_to_parse_is_a_failure_not_a_tree() {
    let w = World::with(&[
        ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
        ("RETRY_MAX_ATTEMPTS", "1"),
    ]);
    let (_, key) = w.new_key();
    let zeros = vec!["0"; 200_000].join(",");
    w.reply(reply(
        200,
        "application/json",
        &format!(r#"{{"content":[],"x":[{zeros}]}}"#),
    ));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("JSON values"));
    // An OpenAI-compatible 2xx carrying an error of that size: reported by its text.
    w.reply(reply(
        200,
        "application/json",
        &format!(r#"{{"error":{{"message":"x"}},"x":[{zeros}]}}"#),
    ));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502);
    assert!(a.json()["error"]["message"].as_str().unwrap().len() <= 1000);
}

#[test]
fn a_json_array_is_no_chat_completion() {
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    w.reply(reply(200, "application/json", "[[],null]"));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:malformed_response")
    );
}

#[test]
fn a_redirect_is_not_followed_and_names_the_base_url_variable() {
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        302,
        "text/html",
        "<a href=\"https://elsewhere.example/\">moved</a>",
    ));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "upstream_redirect");
    assert!(
        e["message"].as_str().unwrap().contains("OPENAI_BASE_URL"),
        "{e}"
    );
    assert_eq!(
        w.p.sent.borrow().len(),
        1,
        "not asked again after a backoff"
    );
    assert_eq!(
        a.header("x-should-retry"),
        Some("false"),
        "a client retry gets the same"
    );
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:redirected"));
    // Another target may serve (a provider sending its traffic to a status page).
    w.reply(reply(301, "text/html", ""));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:redirected,xai:200")
    );
}

/// A 403 may be the request's doing (a model or feature that key cannot use): the provider's
/// next key is asked, and the first is not counted against (README).
#[test]
fn a_403_moves_to_the_next_key_without_counting_against_the_first() {
    let w = World::with(&[
        ("OPENAI_API_KEY_2", "sk-openai-second-secret"),
        ("BREAKER_THRESHOLD", "1"),
    ]);
    let (_, key) = w.new_key();
    let forbidden = reply(
        403,
        "application/json",
        r#"{"error":{"message":"no access"}}"#,
    );
    let served = reply(200, "application/json", OK_JSON);
    let a = first_key_refused_second_serves(&w, &key, &gpt(""), (forbidden, served), "openai", 403);
    let first = a.header("x-switchyard-attempts").unwrap();
    let refused = if first.starts_with("openai#1") { 0 } else { 1 };
    assert!(!w
        .gw
        .breakers
        .borrow()
        .is_open(("openai", refused), w.p.now.get()));
}

/// A key refused inside a translated provider's stream (Anthropic's `authentication_error`
/// event) is the same as its 401: the operator's 502 naming the variable, no retry of that
/// key, no other provider burned.
#[test]
fn a_key_refused_inside_a_translated_stream_is_a_refused_key() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    w.reply(stream_reply(
        &["event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}\n\n"],
        false,
    ));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"stream":true,"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "upstream_authentication_failed");
    assert!(a.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ANTHROPIC_API_KEY"));
    assert_eq!(a.header("x-switchyard-attempts"), Some("anthropic:401"));
    assert_eq!(a.header("x-should-retry"), Some("false"));
}

/// Gemini answers an invalid key with a 400 (`API key not valid`), not a 401: it is still the
/// gateway's credential that was refused, so the provider's next key is tried and the client
/// gets the same 502 naming the variable.
#[test]
fn geminis_invalid_key_400_moves_to_the_next_key_like_a_401() {
    let invalid = || {
        reply(
            400,
            "application/json",
            r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
        )
    };
    let gemini_ok = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"hi there"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2,"totalTokenCount":4},"responseId":"r1"}"#;
    let w = World::with(&[
        ("GOOGLE_API_KEY", "google-first-secret"),
        ("GOOGLE_API_KEY_2", "google-second-secret"),
    ]);
    let (_, key) = w.new_key();
    let body = r#"{"model":"google/gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#;
    let a = first_key_refused_second_serves(
        &w,
        &key,
        body,
        (invalid(), reply(200, "application/json", gemini_ok)),
        "google",
        400,
    );
    assert_eq!(a.json()["choices"][0]["message"]["content"], "hi there");

    // Both refused: a 502 naming a variable, not Google's 400.
    w.reply(invalid());
    w.reply(invalid());
    let a = w.chat(&key, body);
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    let e = &a.json()["error"];
    assert_eq!(e["code"], "upstream_authentication_failed");
    assert!(
        e["message"].as_str().unwrap().contains("GOOGLE_API_KEY"),
        "{e}"
    );
    assert_eq!(w.p.sent.borrow().len(), 4);
}

/// A 2xx answer that is not a chat completion (an error object, `null`, a list, bytes that are
/// not UTF-8) is a failed attempt, never passed on as a success: the next attempt serves.
#[test]
fn a_2xx_answer_that_is_not_a_completion_is_a_failed_attempt() {
    let w = World::new();
    let (_, key) = w.new_key();
    let not_completions: [&[u8]; 5] = [
        br#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#,
        b"null",
        b"[]",
        br#"{"id":"x","object":"chat.completion"}"#,
        b"{\"choices\":[{\"message\":{\"content\":\"\xff\xfe\"}}]}",
    ];
    for body in not_completions {
        w.reply(Ok(UpstreamResponse {
            status: 200,
            content_type: Some("application/json".into()),
            retry_after: None,
            retry_after_ms: None,
            content_length: None,
            body: VecDeque::from([Ok(body.to_vec())]),
        }));
        w.reply(reply(200, "application/json", OK_JSON));
        let a = w.chat(&key, &gpt(""));
        let shown = String::from_utf8_lossy(body);
        assert_eq!(a.status, 200, "{shown}");
        assert_eq!(
            a.json()["id"],
            "chatcmpl-1",
            "{shown}: the second answer served"
        );
        let routing = routing_of(&a);
        assert_eq!(
            routing["attempts"][0]["errorKind"], "malformed_response",
            "{shown}"
        );
    }
    // Nowhere else to go: the provider's own message, as a 502.
    for _ in 0..2 {
        w.reply(reply(
            200,
            "application/json",
            r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#,
        ));
    }
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["message"], "upstream overloaded");
}

/// A short answer whose whole stream arrives in the provider's first read ends while the gateway
/// still judges the attempt: its end waits for the routing chunk, which is still the last chunk
/// before `[DONE]` (pass-through and translated, finished or failed).
#[test]
fn a_stream_that_ends_within_the_first_read_still_has_its_routing_chunk() {
    let trailer_then_done = |a: &Answer, error_code: Option<&str>| {
        let events = crate::sse::tests::decode_pieces(&[&a.body]);
        let n = events.len();
        assert!(events[n - 1].is_done(), "{events:?}");
        assert_eq!(
            events.iter().filter(|e| e.is_done()).count(),
            1,
            "one [DONE]"
        );
        let trailer_at = match error_code {
            None => n - 2,
            Some(code) => {
                let err: Value = serde_json::from_str(&events[n - 2].data).unwrap();
                assert_eq!(err["error"]["code"], code);
                n - 3
            }
        };
        let trailer: Value = serde_json::from_str(&events[trailer_at].data).unwrap();
        assert!(
            trailer["providerMetadata"]["gateway"]["routing"]["finalProvider"].is_string(),
            "{trailer}"
        );
    };
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    let stream = gpt(r#","stream":true"#);

    let whole = [CHUNK_ROLE, CHUNK_HI, CHUNK_STOP, "data: [DONE]\n\n"].concat();
    w.reply(stream_reply(&[&whole], false));
    let a = w.chat(&key, &stream);
    assert_eq!(a.status, 200);
    trailer_then_done(&a, None);
    assert!(String::from_utf8_lossy(&a.body).contains("\"Hi\""));

    // Content, then the provider's stream breaks: still in the first read.
    w.reply(stream_reply(&[&[CHUNK_ROLE, CHUNK_HI].concat()], true));
    let a = w.chat(&key, &stream);
    trailer_then_done(&a, Some("stream_interrupted"));

    // Translated: a whole Anthropic stream in one read.
    let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hey\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    w.reply(stream_reply(&[anthropic], false));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    trailer_then_done(&a, None);
    assert!(String::from_utf8_lossy(&a.body).contains("\"Hey\""));
}

#[test]
fn admin_routing_defaults_are_cleared_by_null_and_refused_when_they_cannot_be_listed() {
    let w = World::new();
    let created = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        r#"{"name":"r","routing":{"order":["xai"]}}"#,
    );
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/keys/{id}");

    // Too much to keep in the listing's metadata: a 400 naming the field, nothing written.
    let many: Vec<String> = (0..16)
        .map(|i| format!("\"openai/a-fine-tuned-model-with-a-rather-long-name-{i:02}\""))
        .collect();
    let body = format!(r#"{{"routing":{{"models":[{}]}}}}"#, many.join(","));
    let a = w.call("PATCH", &path, Some(ADMIN), &body);
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["param"], "routing");
    let listed = w.call("GET", "/admin/keys", Some(ADMIN), "");
    assert_eq!(
        listed.json()["data"][0]["routing"],
        json!({"order": ["xai"]}),
        "unchanged"
    );

    // null clears the defaults; leaving the field out keeps them.
    let a = w.call("PATCH", &path, Some(ADMIN), r#"{"name":"renamed"}"#);
    assert_eq!(a.json()["routing"], json!({"order": ["xai"]}));
    let a = w.call("PATCH", &path, Some(ADMIN), r#"{"routing":null}"#);
    assert_eq!(a.status, 200);
    assert!(a.json().get("routing").is_none(), "{}", a.json());
    let listed = w.call("GET", "/admin/keys", Some(ADMIN), "");
    assert!(listed.json()["data"][0].get("routing").is_none());
}

/// A revocation whose second KV write fails: the key stops working at once anyway, a later
/// PATCH cannot bring it back, and the DELETE can be retried.
#[test]
fn a_half_done_revocation_still_revokes_and_cannot_be_undone_by_an_update() {
    let w = World::new();
    let (id, key) = w.new_key();
    w.reply(reply(200, "application/json", OK_JSON));
    assert_eq!(
        w.chat(&key, &gpt("")).status,
        200,
        "the key works (and is cached)"
    );
    w.p.kv_delete_fails.set(Some("keys/id/"));
    let path = format!("/admin/keys/{id}");
    let a = w.call("DELETE", &path, Some(ADMIN), "");
    assert_eq!(a.status, 500);
    assert_eq!(w.chat(&key, &gpt("")).status, 401, "revoked at once");
    let a = w.call("PATCH", &path, Some(ADMIN), r#"{"name":"back"}"#);
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
    w.p.kv_delete_fails.set(None);
    assert_eq!(w.call("DELETE", &path, Some(ADMIN), "").status, 200);
    assert_eq!(w.chat(&key, &gpt("")).status, 401);
    let listed = w.call("GET", "/admin/keys", Some(ADMIN), "");
    assert_eq!(listed.json()["data"], json!([]));

    // A deletion that cannot even begin (the lookup entry's delete fails) revokes nothing, here
    // or elsewhere: a 500, and the key goes on working until the DELETE is retried.
    let (id, key) = w.new_key();
    w.p.kv_delete_fails.set(Some("keys/hash/"));
    let path = format!("/admin/keys/{id}");
    assert_eq!(w.call("DELETE", &path, Some(ADMIN), "").status, 500);
    w.reply(reply(200, "application/json", OK_JSON));
    assert_eq!(w.chat(&key, &gpt("")).status, 200);
    w.p.kv_delete_fails.set(None);
    assert_eq!(w.call("DELETE", &path, Some(ADMIN), "").status, 200);
    assert_eq!(w.chat(&key, &gpt("")).status, 401);
}

/// What a request's plan does past a target that cannot serve it: a request the gateway cannot
/// put in one provider's terms goes to the next target (nothing was sent); a provider that
/// refuses the gateway's only key is counted against that key's breaker, so later requests try
/// the others first; and retries never starve the plan's later targets of their first try.
#[test]
fn refusals_and_retries_leave_the_rest_of_the_plan_reachable() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    // `logit_bias` cannot go to Anthropic: the OpenAI fallback model serves, Anthropic never
    // called.
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":2},"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("anthropic:unsupported_request,openai:200")
    );
    assert_eq!(w.p.sent.borrow().len(), 1);

    // Anthropic refuses the gateway's only key: straight back (no other provider burned), but
    // its breaker counts it; after the threshold, requests try the fallback first.
    let refused = || {
        reply(
            401,
            "application/json",
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        )
    };
    let body = r#"{"model":"anthropic/claude-sonnet-4-6","messages":[{"role":"user","content":"hi"}],"providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}}"#;
    for _ in 0..3 {
        w.reply(refused());
        let a = w.chat(&key, body);
        assert_eq!(a.status, 502);
        assert_eq!(a.header("x-switchyard-attempts"), Some("anthropic:401"));
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, body);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));
    // (Retries that could starve the fallback: `the_attempt_loop_stops_in_time_…`.)
}

/// The edges of the attempt loop: retries stop at the cap without waiting out a backoff first,
/// first tries stop at twice the cap, a 403 (which the request may have caused) counts against
/// no breaker, and a final last error does not forbid the client's retry when an earlier
/// provider's failure was passing.
#[test]
fn the_attempt_loop_stops_in_time_and_blames_only_what_it_should() {
    // Breakers out of the way (an open one would send the retries elsewhere, see
    // `a_breaker_that_opens_mid_request_defers_its_target`): the caps alone.
    let w = World::with(&[("RETRY_MAX_ATTEMPTS", "10"), ("BREAKER_THRESHOLD", "100")]);
    let (_, key) = w.new_key();
    for _ in 0..8 {
        w.reply(reply(503, "application/json", "{}"));
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200);
    // Ten tries per provider allowed, eight in all: the fallback still gets its first try.
    let attempts = a.header("x-switchyard-attempts").unwrap();
    assert_eq!(attempts.matches("openai:503").count(), 8, "{attempts}");
    assert!(attempts.ends_with(",xai:200"), "{attempts}");
    assert_eq!(
        w.p.slept.borrow().len(),
        7,
        "a backoff before each retry, none before the move to the fallback"
    );

    // Sixteen fallback models (the most allowed), every one failing: sixteen attempts in all.
    let models: Vec<String> = (0..16).map(|i| format!("\"openai/gpt-x-{i}\"")).collect();
    let body = gpt(&format!(
        r#","providerOptions":{{"gateway":{{"models":[{}]}}}}"#,
        models.join(",")
    ));
    let before = w.p.sent.borrow().len();
    for _ in 0..30 {
        w.reply(reply(503, "application/json", "{}"));
    }
    assert_eq!(w.chat(&key, &body).status, 503);
    assert_eq!(w.p.sent.borrow().len() - before, 16);
    w.p.replies.borrow_mut().clear();

    // Two 403s: openai is still tried first.
    let w = World::with(&[("BREAKER_THRESHOLD", "2")]);
    let (_, key) = w.new_key();
    for _ in 0..2 {
        w.reply(reply(
            403,
            "application/json",
            r#"{"error":{"message":"not allowed for this file","type":"invalid_request_error"}}"#,
        ));
        assert_eq!(w.chat(&key, &gpt("")).status, 403);
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));

    // openai overloaded twice, then xai refuses its key: the client may still retry.
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(
        401,
        "application/json",
        r#"{"error":{"message":"bad key"}}"#,
    ));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 502);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,xai:401")
    );
    assert_eq!(a.header("x-should-retry"), None);
}

/// Revocation against requests already under way in the same isolate: a lookup that read the
/// key before the DELETE does not bring it back into the cache, and an update whose writes
/// interleave with the DELETE does not resurrect it in KV.
#[test]
fn a_revocation_holds_against_requests_already_under_way() {
    let w = World::new();
    let (id, key) = w.new_key();
    let path = format!("/admin/keys/{id}");
    let auth = bearer(&key);
    w.p.kv_lookups_yield.set(true);
    w.reply(reply(200, "application/json", OK_JSON));
    let chat = gpt("");
    let (served, deleted) = w.call_both(
        ["POST", "/v1/chat/completions", &auth, &chat],
        ["DELETE", &path, ADMIN, ""],
    );
    assert_eq!(deleted.status, 200);
    assert_eq!(
        served.status,
        401,
        "{}",
        String::from_utf8_lossy(&served.body)
    );
    // KV still serves the old lookup entry (as it may elsewhere for up to a minute).
    let (id2, key2) = w.new_key();
    let stale =
        w.p.kv
            .borrow()
            .get(&format!("keys/hash/{}", auth::hash_secret(&key2)))
            .cloned()
            .unwrap();
    assert_eq!(
        w.call("DELETE", &format!("/admin/keys/{id2}"), Some(ADMIN), "")
            .status,
        200
    );
    w.p.kv
        .borrow_mut()
        .insert(format!("keys/hash/{}", auth::hash_secret(&key2)), stale);
    w.p.now
        .set(w.p.now.get() + w.gw.config.key_cache_ttl_ms + 1);
    assert_eq!(
        w.chat(&key2, &gpt("")).status,
        401,
        "held past the cache TTL"
    );

    // An update and a delete of the same key at once.
    let (id3, key3) = w.new_key();
    let path3 = format!("/admin/keys/{id3}");
    let (patched, deleted) = w.call_both(
        ["PATCH", &path3, ADMIN, r#"{"name":"renamed"}"#],
        ["DELETE", &path3, ADMIN, ""],
    );
    assert_eq!(deleted.status, 200);
    assert_eq!(
        patched.status,
        404,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    assert!(
        !w.p.kv
            .borrow()
            .keys()
            .any(|k| k.contains(&id3) || k.ends_with(&auth::hash_secret(&key3))),
        "nothing of the key is left in KV"
    );
    w.p.kv_lookups_yield.set(false);
    assert_eq!(w.chat(&key3, &gpt("")).status, 401);
    let listed = w.call("GET", "/admin/keys", Some(ADMIN), "");
    assert_eq!(listed.json()["data"], json!([]));

    // The same, the update's clean-up refused once by KV (a delete right after its write): it
    // is tried again a second later, and nothing of the key is left.
    let (id4, key4) = w.new_key();
    let path4 = format!("/admin/keys/{id4}");
    w.p.kv_lookups_yield.set(true);
    // (The DELETE's two deletes come first; the update's first clean-up delete is the third.)
    w.p.kv_delete_fails_at.set(Some(w.p.kv_deletes.get() + 3));
    w.p.slept.borrow_mut().clear();
    let (patched, deleted) = w.call_both(
        ["PATCH", &path4, ADMIN, r#"{"name":"renamed"}"#],
        ["DELETE", &path4, ADMIN, ""],
    );
    w.p.kv_lookups_yield.set(false);
    w.p.kv_delete_fails_at.set(None);
    assert_eq!(
        (patched.status, deleted.status),
        (404, 200),
        "{}",
        patched.text()
    );
    assert_eq!(*w.p.slept.borrow(), [1_100], "one refusal, one wait");
    assert!(
        !w.p.kv
            .borrow()
            .keys()
            .any(|k| k.contains(&id4) || k.ends_with(&auth::hash_secret(&key4))),
        "nothing of the key is left in KV"
    );
}

#[test]
fn admin_names_and_routing_defaults_are_checked_as_clients_mean_them() {
    let w = World::new();
    // 70 CJK characters are 210 bytes: a name of 70 characters.
    let cjk = "鍵".repeat(70);
    let a = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        &format!(r#"{{"name":"{cjk}"}}"#),
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let padded = format!("{:<250}", "a");
    let a = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        &format!(r#"{{"name":"{padded}"}}"#),
    );
    assert_eq!((a.status, a.json()["name"].clone()), (201, json!("a")));
    let long = "a".repeat(201);
    let a = w.call(
        "POST",
        "/admin/keys",
        Some(ADMIN),
        &format!(r#"{{"name":"{long}"}}"#),
    );
    assert_eq!(a.status, 400);

    // A name cannot be cleared.
    let path = format!("/admin/keys/{id}");
    let a = w.call("PATCH", &path, Some(ADMIN), r#"{"name":null}"#);
    assert_eq!(
        (a.status, a.json()["error"]["param"].clone()),
        (400, json!("name"))
    );

    // A fallback model the gateway does not know is refused when the key is made or changed,
    // not on every request made with it; one whose provider has no credential yet is kept.
    for (method, url) in [("POST", "/admin/keys"), ("PATCH", path.as_str())] {
        let a = w.call(
            method,
            url,
            Some(ADMIN),
            r#"{"name":"r","routing":{"models":["opnai/gpt-4o"]}}"#,
        );
        assert_eq!(a.status, 400, "{method}");
        assert_eq!(a.json()["error"]["param"], "routing.models");
    }
    let a = w.call(
        "PATCH",
        &path,
        Some(ADMIN),
        r#"{"routing":{"models":["anthropic/claude-sonnet-4-6"]}}"#,
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
}

#[test]
fn team_routes_are_admin_only_and_say_they_are_not_there_yet() {
    let w = World::new();
    for (method, url) in [
        ("POST", "/admin/teams"),
        ("GET", "/admin/teams"),
        ("PUT", "/admin/teams/t1/byok/openai"),
        ("DELETE", "/admin/teams/t1/byok/openai"),
    ] {
        assert_eq!(w.call(method, url, None, "").status, 401, "{method} {url}");
        let a = w.call(method, url, Some(ADMIN), r#"{"name":"t"}"#);
        assert_eq!(a.status, 501, "{method} {url}");
        assert_eq!(a.json()["error"]["code"], "not_implemented");
        assert_eq!(a.header("x-should-retry"), Some("false"));
    }
}

#[test]
fn tokens_not_shaped_like_keys_cost_no_key_store_read() {
    let w = World::new();
    let (_, key) = w.new_key();
    let reads = w.p.kv_reads.get();
    for token in [
        "sk-sy-1",
        "sk-sy-zzzz",
        &key.to_uppercase(),
        &format!("{key}0"),
    ] {
        assert_eq!(w.chat(token, &gpt("")).status, 401, "{token}");
    }
    assert_eq!(w.p.kv_reads.get(), reads, "refused before any lookup");
    // A well-formed unknown key is looked up once, then remembered as unknown for the TTL.
    let unknown = format!("sk-sy-{}", "0".repeat(48));
    assert_eq!(w.chat(&unknown, &gpt("")).status, 401);
    assert_eq!(w.chat(&unknown, &gpt("")).status, 401);
    assert_eq!(w.p.kv_reads.get(), reads + 1);
}

/// A request whose translation would build trees too large for the isolate is not translated:
/// a 413 naming why, nothing sent, and an OpenAI-compatible fallback serves it as it is.
#[test]
fn a_request_too_complex_to_translate_is_refused_before_any_tree_is_built() {
    let w = World::with(&[("ANTHROPIC_API_KEY", "sk-ant-provider-secret")]);
    let (_, key) = w.new_key();
    let parts = vec![r#"{"type":"text","text":"a"}"#; 60_000].join(",");
    let body = |extra: &str| {
        format!(
            r#"{{"model":"anthropic/claude-sonnet-4-6","messages":[{{"role":"user","content":[{parts}]}}]{extra}}}"#
        )
    };
    let a = w.chat(&key, &body(""));
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "request_too_complex");
    assert!(w.p.sent.borrow().is_empty(), "nothing sent");
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(
        &key,
        &body(r#","providerOptions":{"gateway":{"models":["openai/gpt-4o"]}}"#),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("anthropic:unsupported_request,openai:200")
    );

    // The values inside strings the translators parse count too (tool arguments, results).
    let args = format!("[{}]", vec!["0"; 120_000].join(",")).replace('"', "");
    let body = format!(
        r#"{{"model":"anthropic/claude-sonnet-4-6","messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{args}"}}}}]}},{{"role":"tool","tool_call_id":"c1","content":"ok"}}]}}"#
    );
    let a = w.chat(&key, &body);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"]["code"], "request_too_complex");

    // A tool result that is text (a CSV, source code) is not parsed by Anthropic's translation:
    // its commas do not count.
    w.reply(reply(
        200,
        "application/json",
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
    ));
    let csv = "a,b,c\\n".repeat(60_000);
    let body = format!(
        r#"{{"model":"anthropic/claude-sonnet-4-6","messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","tool_calls":[{{"id":"c1","type":"function","function":{{"name":"f","arguments":"{{}}"}}}}]}},{{"role":"tool","tool_call_id":"c1","content":"{csv}"}}]}}"#
    );
    let a = w.chat(&key, &body);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));

    // An ordinary conversation with tools is far below the limit.
    w.reply(reply(
        200,
        "application/json",
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#,
    ));
    let turns =
        vec![r#"{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}"#; 500]
            .join(",");
    let body = format!(
        r#"{{"model":"anthropic/claude-sonnet-4-6","messages":[{turns},{{"role":"user","content":"bye"}}]}}"#
    );
    assert_eq!(w.chat(&key, &body).status, 200);
}

/// A request repeated with its Idempotency-Key while the first is still being answered in the
/// same isolate does not start a second generation: a 409 the SDKs retry, then the replay.
#[test]
fn an_idempotent_request_still_in_flight_is_not_run_twice() {
    let w = World::new();
    let (_, key) = w.new_key();
    let auth = bearer(&key);
    w.reply(reply(200, "application/json", OK_JSON));
    w.p.fetch_yields.set(true);
    let body = gpt("");
    fn req(auth: &str) -> Inbound<'_> {
        Inbound {
            method: "POST",
            url: "/v1/chat/completions",
            authorization: Some(auth),
            idempotency_key: Some("order-7"),
            ..Default::default()
        }
    }
    let (ra, rb) = (req(&auth), req(&auth));
    let (a, b) = block_on(futures::future::join(
        w.gw.handle(&w.p, &ra, Body(body.as_bytes().to_vec())),
        w.gw.handle(&w.p, &rb, Body(body.as_bytes().to_vec())),
    ));
    let (a, b) = (World::answer(a), World::answer(b));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(b.status, 409, "{}", String::from_utf8_lossy(&b.body));
    assert_eq!(b.json()["error"]["code"], "idempotency_key_in_progress");
    assert_eq!(
        b.header("x-should-retry"),
        None,
        "the SDKs' retry of a 409 is welcome"
    );
    assert_eq!(b.header("retry-after"), Some("1"));
    assert_eq!(w.p.sent.borrow().len(), 1, "one generation");
    // The retry gets the first answer.
    let again = w.call_with(req(&auth), &body);
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-switchyard-idempotent-replay"), Some("true"));
    assert_eq!(w.p.sent.borrow().len(), 1);

    // An outcome that is not kept (a provider failure) frees the slot too: the next try runs.
    fn other(auth: &str) -> Inbound<'_> {
        Inbound {
            idempotency_key: Some("order-8"),
            ..req(auth)
        }
    }
    w.p.fetch_yields.set(false);
    w.reply(reply(
        503,
        "application/json",
        r#"{"error":{"message":"busy"}}"#,
    ));
    w.reply(reply(
        503,
        "application/json",
        r#"{"error":{"message":"busy"}}"#,
    ));
    assert_eq!(w.call_with(other(&auth), &body).status, 503);
    w.reply(reply(200, "application/json", OK_JSON));
    assert_eq!(w.call_with(other(&auth), &body).status, 200);
    assert_eq!(w.p.sent.borrow().len(), 4);

    // A request the runtime abandons without dropping it (a client gone, in workerd) holds its
    // slot only for its own time budget.
    fn third(auth: &str) -> Inbound<'_> {
        Inbound {
            idempotency_key: Some("order-9"),
            ..req(auth)
        }
    }
    w.reply(reply(200, "application/json", OK_JSON));
    let r3 = third(&auth);
    let abandoned = Box::pin(w.gw.handle(&w.p, &r3, Body(body.as_bytes().to_vec())));
    w.p.fetch_yields.set(true);
    let mut abandoned = abandoned;
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(
        std::future::Future::poll(abandoned.as_mut(), &mut cx).is_pending(),
        "under way"
    );
    std::mem::forget(abandoned);
    w.p.fetch_yields.set(false);
    assert_eq!(
        w.call_with(third(&auth), &body).status,
        409,
        "still under way"
    );
    w.p.now
        .set(w.p.now.get() + w.gw.config.total_timeout_ms + 1);
    w.reply(reply(200, "application/json", OK_JSON));
    assert_eq!(
        w.call_with(third(&auth), &body).status,
        200,
        "past its budget"
    );
}

/// Credentials keep their variables' numbers whatever the gaps: the attempts header and the
/// refusal name `OPENAI_API_KEY_4`, the one to renew.
#[test]
fn credentials_are_named_by_their_variables_with_gaps() {
    let w = World::with(&[
        ("OPENAI_API_KEY", ""),
        ("OPENAI_API_KEY_2", "sk-second"),
        ("OPENAI_API_KEY_4", "sk-fourth"),
        ("RETRY_MAX_ATTEMPTS", "1"),
    ]);
    let (_, key) = w.new_key();
    let refused = || {
        reply(
            401,
            "application/json",
            r#"{"error":{"message":"bad key"}}"#,
        )
    };
    w.reply(refused());
    w.reply(refused());
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 502);
    let attempts = a.header("x-switchyard-attempts").unwrap();
    let mut labels: Vec<&str> = attempts.split(',').collect();
    labels.sort();
    assert_eq!(labels, ["openai#2:401", "openai#4:401"]);
    let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("OPENAI_API_KEY_2") || message.contains("OPENAI_API_KEY_4"),
        "{message}"
    );
    assert!(
        !message.contains("OPENAI_API_KEY_3") && !message.contains("sk-"),
        "{message}"
    );
}

/// A target that cannot even be asked (here Vertex AI, which needs a media type the request
/// does not give) does not hide what an earlier provider answered: the client hears the outage.
#[test]
fn a_refusal_after_an_outage_does_not_hide_the_outage() {
    let sa = include_str!("../../tests/fixtures/vertex/test_service_account.json");
    let w = World::with(&[
        ("GOOGLE_API_KEY", "g-key"),
        ("VERTEX_API_KEY", sa),
        ("VERTEX_PROJECT", "proj-1"),
        ("VERTEX_TOKEN_URL", "http://127.0.0.1:9/token"),
    ]);
    let (_, key) = w.new_key();
    let unavailable =
        r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
    w.reply(reply(503, "application/json", unavailable));
    w.reply(reply(503, "application/json", unavailable));
    let body = r#"{"model":"google/gemini-3.1-pro-preview","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"https://generativelanguage.googleapis.com/v1beta/files/abc"}}]}]}"#;
    let a = w.chat(&key, body);
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("google:503,google:503,vertex:unsupported_request")
    );
    assert_eq!(w.p.sent.borrow().len(), 2, "Vertex was not called");
}

/// A credential taken out while a request is under way (by its own failures or others'), or
/// whose one half-open trial another request took, waits until the healthy targets after it have
/// had their turn, and is tried after all if none of them serves: never dropped, so a later
/// target's final refusal does not end a request it could have served.
#[test]
fn a_breaker_that_opens_mid_request_defers_its_target() {
    let w = World::with(&[
        ("RETRY_MAX_ATTEMPTS", "5"),
        ("BREAKER_THRESHOLD", "2"),
        ("BREAKER_COOLDOWN_MS", "1000"),
        ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
    ]);
    let (_, key) = w.new_key();
    // Its own failures open openai's breaker: the next try goes to xai, with no backoff slept
    // for the retry that now waits.
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,xai:200")
    );
    assert_eq!(
        w.p.slept.borrow().len(),
        1,
        "one backoff, before the second try"
    );

    // A deferred target keeps its tries: three in all for openai (RETRY_MAX_ATTEMPTS 3), two
    // before the deferral and one after xai fails for good.
    let w3 = World::with(&[("RETRY_MAX_ATTEMPTS", "3"), ("BREAKER_THRESHOLD", "2")]);
    let (_, key3) = w3.new_key();
    for _ in 0..6 {
        w3.reply(reply(503, "application/json", "{}"));
    }
    let a = w3.chat_with_xai_fallback(&key3);
    assert_eq!(a.status, 503);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,xai:503,xai:503,xai:503,openai:503"),
        "xai has its three tries (nothing healthy waits after it), then openai its third"
    );

    // Half-open again: the trial fails (the breaker reopens at once), and the fallback cannot
    // take the request (Anthropic has no logit_bias): the deferred target is tried after all.
    w.p.now.set(w.p.now.get() + 1_000);
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(200, "application/json", OK_JSON));
    let body = gpt(
        r#","logit_bias":{"1":2},"providerOptions":{"gateway":{"models":["anthropic/claude-sonnet-4-6"]}}"#,
    );
    let a = w.chat(&key, &body);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,anthropic:unsupported_request,openai:503,openai:200")
    );

    // (That success closed the breaker.) Its own failures open it again; the fallback's final
    // refusal does not stand before the deferred target was tried.
    w.p.now.set(w.p.now.get() + 1_000);
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(
        400,
        "application/json",
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let body = gpt(r#","providerOptions":{"gateway":{"models":["anthropic/claude-sonnet-4-6"]}}"#);
    let a = w.chat(&key, &body);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,anthropic:400,openai:200")
    );

    // A final refusal stands when the deferred target then fails too (not its 503), and a
    // deferred credential of the same model at the same provider is not asked the same again.
    w.p.now.set(w.p.now.get() + 1_000);
    let too_long = || {
        reply(
            400,
            "application/json",
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#,
        )
    };
    for r in [
        reply(503, "application/json", "{}"),
        reply(503, "application/json", "{}"),
        too_long(),
        reply(503, "application/json", "{}"),
        reply(503, "application/json", "{}"),
        reply(503, "application/json", "{}"),
    ] {
        w.reply(r);
    }
    let a = w.chat(&key, &body);
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:503,openai:503,anthropic:400,openai:503,openai:503,openai:503"),
        "openai's five tries in all"
    );
    let w2 = World::with(&[
        ("OPENAI_API_KEY_2", "sk-second"),
        ("BREAKER_THRESHOLD", "1"),
        ("RETRY_MAX_ATTEMPTS", "2"),
    ]);
    let (_, key2) = w2.new_key();
    // The first key fails (taken out, its retry waits), the second refuses the body itself:
    // the first is not asked the same again.
    w2.reply(reply(503, "application/json", "{}"));
    w2.reply(reply(
        400,
        "application/json",
        r#"{"error":{"message":"bad request","type":"invalid_request_error"}}"#,
    ));
    w2.reply(reply(200, "application/json", OK_JSON));
    let a = w2.chat(&key2, &gpt(""));
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        w2.p.sent.borrow().len(),
        2,
        "the same request is not sent to the first key again"
    );
    w2.p.replies.borrow_mut().clear();

    // Two requests planned while xai's breaker is half-open, both failing on openai first: the
    // first to reach xai takes the one trial, the other goes on to Anthropic.
    let w = World::with(&[
        ("RETRY_MAX_ATTEMPTS", "1"),
        ("BREAKER_THRESHOLD", "1"),
        ("BREAKER_COOLDOWN_MS", "1000"),
        ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
    ]);
    let (_, key) = w.new_key();
    w.reply(reply(503, "application/json", "{}"));
    let grok = r#"{"model":"xai/grok-3","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(w.chat(&key, grok).status, 503, "xai taken out");
    w.p.now.set(w.p.now.get() + 1_000);
    let anthropic = include_str!("../../tests/fixtures/anthropic/text.json");
    for r in [
        reply(503, "application/json", "{}"),
        reply(503, "application/json", "{}"),
        reply(200, "application/json", OK_JSON),
        reply(200, "application/json", anthropic),
    ] {
        w.reply(r);
    }
    w.p.fetch_yields.set(true);
    let auth = bearer(&key);
    let body = gpt(
        r#","providerOptions":{"gateway":{"models":["xai/grok-3","anthropic/claude-sonnet-4-6"]}}"#,
    );
    let call = ["POST", "/v1/chat/completions", auth.as_str(), body.as_str()];
    let (first, second) = w.call_both(call, call);
    assert_eq!(
        first.header("x-switchyard-attempts"),
        Some("openai:503,xai:200")
    );
    assert_eq!(
        second.header("x-switchyard-attempts"),
        Some("openai:503,anthropic:200")
    );
    w.p.fetch_yields.set(false);

    // Nothing else to go to: an open breaker does not stop the only target.
    assert!(w.gw.breakers.borrow().is_open(("openai", 0), w.p.now.get()));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));
}

/// A deferred target comes back as its retry would have: after its backoff or Retry-After, and
/// as the one to ask when another key of its provider was refused.
#[test]
fn a_deferred_target_comes_back_as_its_retry_would_have() {
    let w = World::with(&[
        ("ANTHROPIC_API_KEY", "sk-ant-provider-secret"),
        ("BREAKER_THRESHOLD", "1"),
    ]);
    let (_, key) = w.new_key();
    let with_claude =
        gpt(r#","providerOptions":{"gateway":{"models":["anthropic/claude-sonnet-4-6"]}}"#);
    let too_long = || {
        reply(
            400,
            "application/json",
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#,
        )
    };
    // 429 with Retry-After: 3 opens openai's breaker; Anthropic refuses; openai is asked again
    // once the 3 s are over.
    w.reply(Ok(UpstreamResponse {
        status: 429,
        content_type: None,
        retry_after: Some("3".into()),
        retry_after_ms: None,
        content_length: None,
        body: VecDeque::new(),
    }));
    w.reply(too_long());
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &with_claude);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:429,anthropic:400,openai:200")
    );
    assert_eq!(*w.p.slept.borrow(), vec![3000]);

    // Two keys: the first fails and is taken out, the second is refused (revoked): the first
    // is the one to ask after all.
    let w = World::with(&[
        ("OPENAI_API_KEY_2", "sk-second"),
        ("BREAKER_THRESHOLD", "1"),
    ]);
    let (_, key) = w.new_key();
    w.reply(reply(503, "application/json", "{}"));
    w.reply(reply(
        401,
        "application/json",
        r#"{"error":{"message":"revoked"}}"#,
    ));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat(&key, &gpt(""));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let attempts = a.header("x-switchyard-attempts").unwrap();
    let statuses: Vec<&str> = attempts
        .split(',')
        .map(|a| a.rsplit(':').next().unwrap())
        .collect();
    assert_eq!(statuses, ["503", "401", "200"], "{attempts}");
}

/// A deferred retry that the attempt cap forbids by the time its turn comes is not waited for.
#[test]
fn a_deferred_retry_past_the_attempt_cap_is_not_waited_for() {
    let w = World::with(&[("BREAKER_THRESHOLD", "1")]);
    let (_, key) = w.new_key();
    w.reply(Ok(UpstreamResponse {
        status: 429,
        content_type: None,
        retry_after: Some("5".into()),
        retry_after_ms: None,
        content_length: None,
        body: VecDeque::new(),
    }));
    for _ in 0..7 {
        w.reply(reply(503, "application/json", "{}"));
    }
    let a = w.chat(
        &key,
        &gpt(r#","providerOptions":{"gateway":{"models":["xai/m1","xai/m2","xai/m3","xai/m4"]}}"#),
    );
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    let attempts = a.header("x-switchyard-attempts").unwrap();
    assert_eq!(attempts.split(',').count(), 8, "{attempts}");
    // Only the xai retries' short backoffs; nothing of openai's 5 s.
    let slept = w.p.slept.borrow();
    assert!(
        slept.len() == 3 && slept.iter().all(|&ms| ms < 1_000),
        "openai's Retry-After was not slept: {slept:?}"
    );
}

/// A stream handed to the client reports how it ended to its target's breaker: failures after
/// content count (the attempt loop never sees them), the end of an answer is the success, and
/// so is a client that leaves while it is served.
#[test]
fn streams_report_to_the_breaker_how_they_ended() {
    let w = World::with(&[("BREAKER_THRESHOLD", "2"), ("RETRY_MAX_ATTEMPTS", "1")]);
    let (_, key) = w.new_key();
    let open = || w.gw.breakers.borrow().is_open(("openai", 0), w.p.now.get());
    // Two streams cut after content: each was served (openai:200), and the breaker opens.
    for _ in 0..2 {
        assert!(!open());
        w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI], true));
        let a = w.stream_with_xai_fallback(&key);
        assert_eq!(a.header("x-switchyard-attempts"), Some("openai:200"));
        assert!(a.text().contains("stream_interrupted"), "{}", a.text());
    }
    assert!(open());
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("xai:200"),
        "openai is passed over"
    );

    // After the cool-down, a stream is openai's trial: it stays the one trial while it runs,
    // and its clean end closes the breaker.
    w.p.now.set(w.p.now.get() + 31_000);
    w.reply(stream_reply(OK_STREAM, false));
    let out = w.chat_handed_off(&key, &gpt(r#","stream":true"#));
    assert!(open(), "the trial is running: others keep away");
    let a = World::answer(out);
    assert!(a.text().ends_with("data: [DONE]\n\n") && !a.text().contains("error"));
    assert!(!open(), "the trial's stream ended well");

    // One cut after that is one failure (the count started over): still closed.
    w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI], true));
    w.stream_with_xai_fallback(&key);
    assert!(!open());
    // A client that leaves mid-stream is no failure of the provider's: the count starts over.
    w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI, CHUNK_HI], true));
    let out = w.chat_handed_off(&key, &gpt(r#","stream":true"#));
    drop(out); // (the client went away before the provider's cut)
    w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI], true));
    w.stream_with_xai_fallback(&key);
    assert!(!open(), "one failure since the client left");
    w.reply(stream_reply(&[CHUNK_ROLE, CHUNK_HI], true));
    w.stream_with_xai_fallback(&key);
    assert!(open(), "two in a row");
}

/// A provider behind Cloudflare answers 520–524 in an incident (an HTML page): retried, then the
/// fallback serves, and the breaker counts it.
#[test]
fn cloudflare_origin_errors_are_retried_and_fall_back() {
    let w = World::with(&[("BREAKER_THRESHOLD", "2")]);
    let (_, key) = w.new_key();
    let page = "<html><body>A timeout occurred (Error code 524)</body></html>";
    w.reply(reply(524, "text/html", page));
    w.reply(reply(522, "text/html", page));
    w.reply(reply(200, "application/json", OK_JSON));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.header("x-switchyard-attempts"),
        Some("openai:524,openai:522,xai:200")
    );
    assert!(w.gw.breakers.borrow().is_open(("openai", 0), w.p.now.get()));
    // 501 is final: a retry would not change it.
    let w = World::new();
    let (_, key) = w.new_key();
    w.reply(reply(
        501,
        "application/json",
        r#"{"error":{"message":"not implemented"}}"#,
    ));
    let a = w.chat_with_xai_fallback(&key);
    assert_eq!(a.header("x-switchyard-attempts"), Some("openai:501"));
}

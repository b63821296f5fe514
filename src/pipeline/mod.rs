//! The request pipeline: one inbound request in, one response out, over the platform traits.
//!
//! [`Gateway`] is built once per isolate (configuration, key cache, rendered model list) and
//! handles every request: route, authenticate, dispatch, and render any error in OpenAI's shape.
//! Every response carries `x-request-id`; allowed browser origins get CORS headers.

mod admin;
mod chat;
mod models;
mod vertex_auth;

pub use admin::KeyView;

use crate::auth::{self, Cached, KeyCache, KeyRecord};
use crate::config::Config;
use crate::error::GatewayError;
use crate::ids;
use crate::platform::{Clock, InboundBody, Kv, StreamTransform, Upstream};
use crate::routing::Breakers;
use std::cell::{OnceCell, RefCell};

/// The request headers a preflight from an allowed origin may send: whatever the browser asks
/// for (the SDKs add headers of their own over time: `user-agent`, `x-stainless-*`,
/// `openai-beta` …), when the list is made of header names; else the ones the OpenAI SDKs send.
fn cors_allowed_headers(asked: Option<&str>) -> String {
    const KNOWN: &str = "authorization, content-type, user-agent, x-request-id, idempotency-key, \
        openai-organization, openai-project, openai-beta, x-stainless-arch, x-stainless-lang, \
        x-stainless-os, x-stainless-package-version, x-stainless-retry-count, \
        x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, \
        x-stainless-helper-method";
    let is_name = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match asked
        .map(str::trim)
        .filter(|a| !a.is_empty() && a.len() <= 2048)
    {
        Some(a) if a.split(',').map(str::trim).all(is_name) => a.to_ascii_lowercase(),
        _ => KNOWN.to_owned(),
    }
}

/// Debug output never shows the credential the request carries.
impl std::fmt::Debug for Inbound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("request_id", &self.request_id)
            .field("origin", &self.origin)
            .field("content_length", &self.content_length)
            .field("idempotency_key", &self.idempotency_key)
            .field("cors_request_headers", &self.cors_request_headers)
            .finish()
    }
}

/// A JSON answer: status and body.
type Json = (u16, Vec<u8>);

/// The parts of an inbound request the gateway reads (the edge copies just these few headers).
#[derive(Default, Clone, Copy)]
pub struct Inbound<'a> {
    pub method: &'a str,
    /// The full URL or just the path, with or without a query.
    pub url: &'a str,
    pub authorization: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// `Access-Control-Request-Headers` of a CORS preflight (read for OPTIONS only).
    pub cors_request_headers: Option<&'a str>,
}

/// A response for the edge to send.
pub struct Outbound<B> {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: OutBody<B>,
}

pub enum OutBody<B> {
    Empty,
    Bytes(Vec<u8>),
    /// A provider's stream: `prefix` (what was read before committing to this provider), then
    /// the rest of `body`, each piece through `transform` on its way out.
    Stream {
        prefix: Vec<u8>,
        body: B,
        transform: Box<dyn StreamTransform>,
        /// Longest silence of the provider from here on before the stream is ended as timed
        /// out (ms; 0: none). The content has started: no fallback is possible any more.
        idle_timeout_ms: u64,
    },
}

impl<B> std::fmt::Debug for OutBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutBody::Empty => f.write_str("Empty"),
            OutBody::Bytes(b) => write!(f, "Bytes({})", String::from_utf8_lossy(b)),
            OutBody::Stream { prefix, .. } => {
                write!(f, "Stream({}…)", String::from_utf8_lossy(prefix))
            }
        }
    }
}

fn json<B>((status, body): Json) -> Outbound<B> {
    Outbound {
        status,
        headers: vec![("content-type", "application/json".to_owned())],
        body: OutBody::Bytes(body),
    }
}

/// An error as an OpenAI error body with its status (and `Retry-After` when known).
pub fn error_response<B>(e: &GatewayError) -> Outbound<B> {
    let mut out = json((e.status, e.to_json()));
    if let Some(ra) = &e.retry_after {
        out.headers.push(("retry-after", ra.clone()));
    }
    if let Some(p) = e.provider {
        out.headers.push(("x-switchyard-provider", p.to_owned()));
    }
    if e.is_final() {
        // The OpenAI SDKs retry 409 and every 5xx by default: not these, which a retry cannot
        // end (the header is the SDKs' own switch).
        out.headers.push(("x-should-retry", "false".to_owned()));
    }
    out
}

/// The routes, by path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Root,
    Health,
    Models,
    Model(String),
    ChatCompletions,
    Keys,
    Key(String),
    /// `/admin/teams…` (teams, their budgets and BYOK credentials): planned, not built yet.
    Teams,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        match path {
            "/" => Route::Root,
            "/health" => Route::Health,
            "/v1/models" => Route::Models,
            "/v1/chat/completions" => Route::ChatCompletions,
            "/admin/keys" => Route::Keys,
            "/admin/teams" => Route::Teams,
            _ if path.starts_with("/admin/teams/") => Route::Teams,
            _ => {
                if let Some(id) = path.strip_prefix("/v1/models/") {
                    Route::Model(percent_decode(id))
                } else if let Some(id) = path.strip_prefix("/admin/keys/") {
                    if id.is_empty() || id.contains('/') {
                        Route::NotFound
                    } else {
                        Route::Key(percent_decode(id))
                    }
                } else {
                    Route::NotFound
                }
            }
        }
    }

    /// The methods the route answers (OPTIONS is answered for every route).
    fn allow(&self) -> &'static str {
        match self {
            Route::Root | Route::Health | Route::Models | Route::Model(_) => "GET",
            Route::ChatCompletions => "POST",
            Route::Keys => "GET, POST",
            Route::Key(_) => "PATCH, DELETE",
            Route::Teams => "GET, POST, PUT, PATCH, DELETE",
            Route::NotFound => "",
        }
    }

    /// The `Allow` header's value: the route's methods, HEAD with GET, and OPTIONS.
    fn allow_header(&self) -> String {
        let allow = self.allow();
        let head = if allow.contains("GET") { ", HEAD" } else { "" };
        format!("{allow}{head}, OPTIONS")
    }
}

/// A path as error messages show it: a segment that holds what looks like a secret (`sk-…`: a
/// gateway key, or a provider's, pasted in the wrong place) is left out.
fn shown_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !crate::error::looks_secret(path) {
        return path.into(); // (the usual case: no allocation)
    }
    path.split('/')
        .map(|seg| {
            if crate::error::looks_secret(seg) {
                "…"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

/// The path of a URL (`https://h/p?q` or `/p?q` → `/p`).
fn path_of(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Decodes `%XX` escapes (model ids reach us as `openai%2Fgpt-4o` from SDKs that encode paths).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The gateway, one per isolate.
pub struct Gateway {
    pub config: Config,
    key_cache: RefCell<KeyCache>,
    models_list: OnceCell<Vec<u8>>,
    /// Vertex access tokens, one cache per service account (credential index).
    vertex_tokens: RefCell<std::collections::HashMap<u8, crate::providers::vertex::TokenCache>>,
    /// Idempotency slots being answered in this isolate, each until when at the most (ms).
    idempotent_in_flight: RefCell<std::collections::HashMap<String, u64>>,
    /// (Shared with the streams being served, which report how they ended.)
    breakers: std::rc::Rc<RefCell<Breakers>>,
}

impl Gateway {
    pub fn new(config: Config) -> Gateway {
        let breakers = Breakers::new(config.breaker_threshold, config.breaker_cooldown_ms);
        Gateway {
            breakers: std::rc::Rc::new(RefCell::new(breakers)),
            config,
            key_cache: RefCell::new(KeyCache::default()),
            models_list: OnceCell::new(),
            vertex_tokens: RefCell::default(),
            idempotent_in_flight: RefCell::default(),
        }
    }

    /// Handles one request. Never fails: every error becomes an OpenAI error response.
    pub async fn handle<P, R>(&self, p: &P, req: &Inbound<'_>, body: R) -> Outbound<P::Body>
    where
        P: Clock + Upstream + Kv,
        R: InboundBody,
    {
        let request_id = match req.request_id.and_then(ids::sanitize_request_id) {
            Some(id) => id.to_owned(),
            None => self.new_id(p, "req"),
        };
        let route = Route::of(path_of(req.url));
        // A chat request gets its generation id up front, so that failures carry it too.
        let generation_id = (route == Route::ChatCompletions && req.method == "POST")
            .then(|| self.new_id(p, "gen"));
        let mut out = if req.method == "OPTIONS" {
            // (What the route takes, as RFC 9110 has OPTIONS answer; CORS adds its own below.)
            let allow = (route != Route::NotFound).then(|| ("allow", route.allow_header()));
            Outbound {
                status: 204,
                headers: allow.into_iter().collect(),
                body: OutBody::Empty,
            }
        } else {
            match self
                .dispatch(p, req, route, body, &request_id, generation_id.as_deref())
                .await
            {
                Ok(out) => out,
                Err(e) => error_response(&e),
            }
        };
        if req.method == "HEAD" {
            out.body = OutBody::Empty;
        }
        // Admin answers (a new key's secret, key listings, their errors) are for the caller
        // alone: no cache, a browser's or a proxy's, keeps them.
        if path_of(req.url).starts_with("/admin/") {
            out.headers.push(("cache-control", "no-store".to_owned()));
        }
        // A replayed answer keeps the generation id it was first given.
        if let Some(id) =
            generation_id.filter(|_| !out.headers.iter().any(|(n, _)| *n == "x-generation-id"))
        {
            out.headers.push(("x-generation-id", id));
        }
        out.headers.push(("x-request-id", request_id));
        self.add_cors(req, &mut out);
        out
    }

    fn new_id<P: Clock>(&self, p: &P, prefix: &str) -> String {
        let mut random = [0u8; 10];
        p.fill_random(&mut random);
        ids::prefixed(prefix, p.now_ms(), random)
    }

    fn add_cors<B>(&self, req: &Inbound<'_>, out: &mut Outbound<B>) {
        if self.config.cors_origins.is_empty() {
            return;
        }
        let preflight = req.method == "OPTIONS";
        let h = &mut out.headers;
        // The answer depends on the Origin (and a preflight's on the headers it asks for), so
        // caches must keep them apart, allowed or not.
        h.push((
            "vary",
            if preflight {
                "Origin, Access-Control-Request-Headers"
            } else {
                "Origin"
            }
            .to_owned(),
        ));
        let Some(origin) = req.origin.filter(|o| self.config.cors_allows(o)) else {
            return;
        };
        h.push(("access-control-allow-origin", origin.to_owned()));
        h.push((
            "access-control-expose-headers",
            "x-request-id, x-generation-id, x-switchyard-provider, x-switchyard-attempts, \
             x-switchyard-idempotent-replay, retry-after, x-should-retry"
                .to_owned(),
        ));
        if preflight {
            h.push((
                "access-control-allow-methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS".to_owned(),
            ));
            h.push((
                "access-control-allow-headers",
                cors_allowed_headers(req.cors_request_headers),
            ));
            h.push(("access-control-max-age", "86400".to_owned()));
        }
    }

    async fn dispatch<P, R>(
        &self,
        p: &P,
        req: &Inbound<'_>,
        route: Route,
        body: R,
        request_id: &str,
        generation_id: Option<&str>,
    ) -> Result<Outbound<P::Body>, GatewayError>
    where
        P: Clock + Upstream + Kv,
        R: InboundBody,
    {
        let path = shown_path(path_of(req.url));
        if route == Route::NotFound {
            return Err(GatewayError::not_found(format!(
                "No route for {} {path}.",
                req.method
            )));
        }
        let allow = route.allow();
        // HEAD is GET without the body (`handle` drops it).
        let method = match req.method {
            "HEAD" if allow.contains("GET") => "GET",
            m => m,
        };
        if !allow.split(", ").any(|m| m == method) {
            let mut out = error_response(&GatewayError::method_not_allowed(req.method, &path));
            out.headers.push(("allow", route.allow_header()));
            return Ok(out);
        }
        match route {
            Route::Root => Ok(json((
                200,
                br#"{"name":"switchyard","object":"gateway","docs":"/v1/models"}"#.to_vec(),
            ))),
            Route::Health => Ok(json((200, br#"{"status":"ok"}"#.to_vec()))),
            Route::Models => {
                self.authenticate(p, req).await?;
                let list = self.models_list.get_or_init(models::render_list);
                Ok(json((200, list.clone())))
            }
            Route::Model(id) => {
                self.authenticate(p, req).await?;
                Ok(json((200, models::render_one(&id)?)))
            }
            Route::ChatCompletions => {
                let key = self.authenticate(p, req).await?;
                let body = self.read_body(req, body).await?;
                let ids = chat::Ids {
                    request: request_id,
                    generation: generation_id.unwrap_or_default(),
                    created: p.now_ms() / 1000,
                };
                self.chat(p, &key, &body, ids, req.idempotency_key).await
            }
            Route::Keys | Route::Key(_) => {
                self.authenticate_admin(req)?;
                let answer = match (route, method) {
                    (Route::Keys, "GET") => self.list_keys(p).await,
                    (Route::Keys, _) => {
                        let body = self.read_body(req, body).await?;
                        self.create_key(p, &body).await
                    }
                    (Route::Key(id), "PATCH") => {
                        let body = self.read_body(req, body).await?;
                        self.update_key(p, &id, &body).await
                    }
                    (Route::Key(id), _) => self.delete_key(p, &id).await,
                    _ => unreachable!("methods were checked against the route"),
                };
                answer.map(json)
            }
            Route::Teams => {
                self.authenticate_admin(req)?;
                Err(GatewayError::not_implemented(
                    "Teams and their BYOK credentials are not supported by this gateway version \
                     yet.",
                ))
            }
            Route::NotFound => unreachable!("handled above"),
        }
    }

    /// Reads the body, refusing one over the limit before reading when its length is declared.
    async fn read_body<R: InboundBody>(
        &self,
        req: &Inbound<'_>,
        body: R,
    ) -> Result<Vec<u8>, GatewayError> {
        let limit = self.config.max_request_bytes;
        let declared = req
            .content_length
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(GatewayError::payload_too_large(limit));
        }
        body.read(limit, declared)
            .await?
            .ok_or_else(|| GatewayError::payload_too_large(limit))
    }

    /// The caller's gateway key record: from the isolate cache, else from the key store.
    async fn authenticate<P: Clock + Kv>(
        &self,
        p: &P,
        req: &Inbound<'_>,
    ) -> Result<KeyRecord, GatewayError> {
        let token = auth::bearer(req.authorization).ok_or_else(|| {
            GatewayError::authentication(
                "Missing gateway key. Send it as `Authorization: Bearer sk-sy-…`.",
            )
        })?;
        let invalid = || GatewayError::authentication("Invalid or revoked gateway key.");
        // Not a key's shape: refused without a key-store read or a cache entry.
        if !auth::is_key_shaped(token) {
            return Err(invalid());
        }
        let hash = auth::hash_secret(token);
        let now = p.now_ms();
        let ttl = self.config.key_cache_ttl_ms;
        match self.key_cache.borrow().get(&hash, now, ttl) {
            Cached::Valid(rec) => return Ok(rec.clone()),
            Cached::Invalid => return Err(invalid()),
            Cached::Unknown => {}
        }
        let rec = admin::lookup(p, &hash)
            .await
            .map_err(GatewayError::key_store)?;
        let mut cache = self.key_cache.borrow_mut();
        cache.put(hash.clone(), rec.clone(), now, ttl);
        // Revoked here while the lookup was under way: the revocation answers.
        if cache.is_revoked(&hash, p.now_ms(), ttl) {
            return Err(invalid());
        }
        rec.ok_or_else(invalid)
    }

    fn authenticate_admin(&self, req: &Inbound<'_>) -> Result<(), GatewayError> {
        let expected = self.config.admin_token.as_deref().ok_or_else(|| {
            GatewayError::authentication("The admin API is disabled: ADMIN_TOKEN is not set.")
        })?;
        match auth::bearer(req.authorization) {
            Some(t) if auth::admin_token_matches(expected, t) => Ok(()),
            _ => Err(GatewayError::authentication("Invalid admin token.")),
        }
    }
}

#[cfg(test)]
mod tests;

//! `POST /v1/chat/completions`: plan the attempts, try them until one serves, answer.
//!
//! Fast path (OpenAI-compatible provider): the body goes out as sent with only `model` rewritten
//! (and the gateway's `providerOptions` removed); the answer's bytes come back unchanged, with the
//! routing metadata spliced in. Translated path (Anthropic, Gemini, Vertex): the body is decoded
//! into the canonical request and built in the provider's protocol; the answer comes back as one
//! OpenAI body, or as a stream rewritten event by event by a pure state machine.
//!
//! Reliability: each planned provider gets up to `attempts_per_provider` tries for retryable
//! failures, with backoff (or the provider's `Retry-After`), within the per-attempt and total
//! timeouts; non-retryable failures return at once. A stream is read until its first content
//! before the client sees anything, so a provider that fails early is skipped like any other.

use super::{error_response, Gateway, OutBody, Outbound};
use crate::auth::{self, KeyRecord};
use crate::canonical::ChatRequest;
use crate::chat_body::{ChatSummary, RawObject};
use crate::error::GatewayError;
use crate::formats::openai::{self, ChunkEncoder};
use crate::platform::{
    Clock, FetchError, Kv, Progress, StreamTransform, Upstream, UpstreamRequest,
};
use crate::providers::native::{Native, TranslatedStream};
use crate::providers::openai_compat::{self, PassThroughStream};
use crate::providers::ProviderSpec;
use crate::routing::{
    self, backoff_ms, retry_after_ms, Attempt, AttemptOutcome, Draws, RoutingOptions, RoutingReport,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;

/// The ids of one chat request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ids<'a> {
    /// `x-request-id`, forwarded upstream.
    pub request: &'a str,
    /// `x-generation-id`; also the completion id of translated responses.
    pub generation: &'a str,
    /// When the request came (Unix seconds): `created` of a translated answer and of every
    /// chunk the gateway writes into a stream (OpenAI gives all chunks the same).
    pub created: u64,
}

/// What a successful attempt produced.
enum Served<B> {
    /// A whole OpenAI chat.completion body.
    Json(Vec<u8>),
    /// A stream already read up to its first content (`prefix`), and the rest still upstream.
    Stream {
        prefix: Vec<u8>,
        body: B,
        transform: Box<dyn StreamTransform>,
    },
}

/// Why an attempt failed, and what that means for the next one.
struct Failure {
    outcome: AttemptOutcome,
    error: GatewayError,
    retry_after_ms: Option<u64>,
}

impl Failure {
    fn new(outcome: AttemptOutcome, error: GatewayError) -> Self {
        Failure {
            outcome,
            error,
            retry_after_ms: None,
        }
    }
}

/// How long idempotent outcomes are kept.
const IDEMPOTENCY_TTL_SECS: u64 = 24 * 60 * 60;

/// An idempotent outcome as stored in KV.
#[derive(Serialize, Deserialize)]
struct StoredOutcome<'a> {
    body_hash: String,
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(borrow)]
    body: std::borrow::Cow<'a, str>,
}

/// An idempotency slot being answered in this isolate; freed when the answer is done with,
/// or when the request goes away.
struct InFlight<'a> {
    map: &'a RefCell<HashMap<String, u64>>,
    slot: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.map.try_borrow_mut() {
            map.remove(&self.slot);
        }
    }
}

/// What the attempt loop keeps about one plan entry.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Put at the end of the order once, for its breaker.
    deferred: bool,
    /// Tries so far, over every visit.
    tries: u32,
    /// When a deferred retry's backoff (or Retry-After) ends.
    not_before: u64,
    /// A refused cached Vertex token has been given back its try (once per target).
    token_refreshed: bool,
}

/// A credential taken out since the plan was made (by the request's own failures or others', or
/// its one half-open trial taken by another request) waits until the healthy targets after it
/// have had their turn, and is tried after all. True when target `i` (just taken from `order`,
/// `pos` past it) is to wait: it is then put at the end, once.
fn defer(
    plan: &[Attempt],
    breakers: &routing::Breakers,
    state: &mut [Entry],
    order: &mut Vec<usize>,
    i: usize,
    pos: usize,
    now: u64,
) -> bool {
    let healthy = |j: &usize| !breakers.is_open(plan[*j].target.key(), now);
    let wait = !state[i].deferred && !healthy(&i) && order[pos..].iter().any(healthy);
    if wait {
        state[i].deferred = true;
        order.push(i);
    }
    wait
}

/// The most KV stores under one key (Cloudflare's limit): a larger outcome is not kept.
const MAX_KV_VALUE_BYTES: usize = 25 * 1024 * 1024;

impl Gateway {
    pub(super) async fn chat<P: Clock + Upstream + Kv>(
        &self,
        p: &P,
        key: &KeyRecord,
        body: &[u8],
        ids: Ids<'_>,
        idempotency_key: Option<&str>,
    ) -> Result<Outbound<P::Body>, GatewayError> {
        let obj = RawObject::parse(body)?;
        let summary = obj.chat_summary()?;
        let opts = RoutingOptions::from_provider_options(obj.get("providerOptions"))?
            .over(key.routing.as_ref());
        let idem = idempotency_key.filter(|_| !summary.stream).map(|k| {
            (
                format!("idem/{}/{}", key.id, auth::hash_secret(k)),
                auth::hash_bytes(body),
            )
        });
        // The same key still being answered in this isolate: not a second generation (Stripe's
        // answer; the OpenAI SDKs retry a 409, and a retry after the first answer gets its
        // replay). Taken before the stored outcome is read, so that one finishing in between
        // cannot slip past both; held until this request's own time budget at the most, in
        // case the runtime abandons it without a word (a client that went away).
        let _in_flight = match &idem {
            Some((slot, _)) => {
                let now = p.now_ms();
                let mut in_flight = self.idempotent_in_flight.borrow_mut();
                if in_flight.get(slot).is_some_and(|until| now < *until) {
                    return Err(GatewayError::new_conflict(
                        "A request with this Idempotency-Key is still being answered; retry \
                         shortly to get its answer.",
                    )
                    .with_code("idempotency_key_in_progress")
                    .with_retry_after(Some("1".to_owned())));
                }
                let budget = opts
                    .total_timeout_ms
                    .unwrap_or(self.config.total_timeout_ms);
                if in_flight.len() >= 1024 {
                    in_flight.retain(|_, until| now < *until); // abandoned ones
                }
                in_flight.insert(slot.clone(), now.saturating_add(budget));
                Some(InFlight {
                    map: &self.idempotent_in_flight,
                    slot: slot.clone(),
                })
            }
            None => None,
        };
        if let Some((slot, body_hash)) = &idem {
            if let Some(replay) = self.replay(p, slot, body_hash).await? {
                return Ok(replay);
            }
        }
        let (out, retry_may_differ) = self.route_chat(p, &obj, &summary, &opts, ids).await?;
        if let (Some((slot, body_hash)), OutBody::Bytes(bytes)) = (&idem, &out.body) {
            // Answers, and refusals of this very body (invalid, too large, too long for the
            // model); not failures that a fix on the gateway's side ends (a refused credential,
            // a wrong base URL) nor ones that pass (rate limits, timeouts), nor a refusal that
            // came after such a failure (the target that failed may serve it next time).
            let final_for_this_body = matches!(out.status, 400 | 413 | 422) && !retry_may_differ;
            if (200..300).contains(&out.status) || final_for_this_body {
                let stored = StoredOutcome {
                    body_hash: body_hash.clone(),
                    status: out.status,
                    headers: out
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .chain([("x-generation-id".to_owned(), ids.generation.to_owned())])
                        .collect(),
                    body: String::from_utf8_lossy(bytes),
                };
                let json = serde_json::to_string(&stored).expect("serializes");
                // A failed write (or one KV would refuse) loses only the replay, never the
                // answer.
                if json.len() <= MAX_KV_VALUE_BYTES {
                    let _ = p.put(slot, &json, None, Some(IDEMPOTENCY_TTL_SECS)).await;
                }
            }
        }
        Ok(out)
    }

    /// A stored outcome for this idempotency slot: replayed when the body matches, 409 if not.
    async fn replay<P: Kv, B>(
        &self,
        p: &P,
        slot: &str,
        body_hash: &str,
    ) -> Result<Option<Outbound<B>>, GatewayError> {
        let Some(json) = p.get(slot).await.ok().flatten() else {
            return Ok(None);
        };
        let Ok(stored) = serde_json::from_str::<StoredOutcome>(&json) else {
            return Ok(None);
        };
        if stored.body_hash != body_hash {
            return Err(GatewayError::new_conflict(
                "This Idempotency-Key was already used with a different request body.",
            ));
        }
        let mut headers: Vec<(&'static str, String)> = stored
            .headers
            .into_iter()
            .filter_map(|(k, v)| REPLAYED_HEADERS.iter().find(|h| **h == k).map(|h| (*h, v)))
            .collect();
        headers.push(("x-switchyard-idempotent-replay", "true".to_owned()));
        Ok(Some(Outbound {
            status: stored.status,
            headers,
            body: OutBody::Bytes(stored.body.into_owned().into_bytes()),
        }))
    }

    /// Plans and runs the attempts; an error answer (with the attempts header) when none serves,
    /// and whether an attempt failed in a way a retry may end (then a later refusal is not the
    /// request's final outcome).
    async fn route_chat<P: Clock + Upstream>(
        &self,
        p: &P,
        obj: &RawObject<'_>,
        summary: &ChatSummary,
        opts: &RoutingOptions,
        ids: Ids<'_>,
    ) -> Result<(Outbound<P::Body>, bool), GatewayError> {
        let started = p.now_ms();
        let plan = {
            let breakers = self.breakers.borrow();
            routing::plan(
                &summary.model,
                opts,
                &self.config,
                &self.config.weights,
                &breakers,
                started,
                Draws {
                    provider: self.random_unit(p),
                    credential: self.random_unit(p),
                },
            )?
        };
        let policy = self.config.retry;
        let attempt_timeout = opts.timeout_ms.unwrap_or(self.config.timeout_ms);
        let deadline = started.saturating_add(
            opts.total_timeout_ms
                .unwrap_or(self.config.total_timeout_ms),
        );
        let mut report = RoutingReport::new(&summary.model, &plan);
        let mut last: Option<GatewayError> = None;
        let mut total = 0;
        // The plan's order, with the targets passed over for their breakers (below) once more
        // at the end.
        let mut order: Vec<usize> = (0..plan.len()).collect();
        // Per plan entry: deferred once, its tries (kept over a deferral, so its retries stay
        // within the policy) and when a deferred retry's backoff ends.
        let mut state = vec![Entry::default(); plan.len()];
        // The loop ended on the deadline or the attempt cap (the last error says which).
        let mut cut_short = false;
        // A refusal a retry cannot end, kept as the answer unless a deferred target serves.
        let mut refusal: Option<GatewayError> = None;
        let mut pos = 0;
        'targets: while let Some(&i) = order.get(pos) {
            pos += 1;
            let attempt = &plan[i];
            let mut tries = state[i].tries;
            loop {
                let now = p.now_ms();
                // A deferred retry waits out what is left of its backoff (or Retry-After).
                let left = state[i].not_before.saturating_sub(now);
                if left > 0 {
                    // No wait for a retry the attempt cap forbids by now.
                    if total >= policy.max_attempts {
                        continue 'targets;
                    }
                    if now.saturating_add(left) >= deadline {
                        last = Some(GatewayError::timeout(
                            "No provider answered within the request's time budget.",
                        ));
                        cut_short = true;
                        continue 'targets;
                    }
                    p.sleep(left).await;
                    continue;
                }
                // (Not the same target again at once after its cached token was refused: its
                // own half-open trial, say, would put it behind the others.)
                let refreshing = state[i].token_refreshed && tries == 0;
                if tries == 0
                    && !refreshing
                    && defer(
                        &plan,
                        &self.breakers.borrow(),
                        &mut state,
                        &mut order,
                        i,
                        pos,
                        now,
                    )
                {
                    continue 'targets;
                }
                if now >= deadline {
                    last = Some(GatewayError::timeout(
                        "No provider answered within the request's time budget.",
                    ));
                    cut_short = true;
                    break 'targets;
                }
                // The attempt cap bounds retries: every target in the plan gets its first try
                // (within the time budget), so fallbacks are never starved by retries before
                // them; first tries too stop at twice the cap (a long `models` list).
                if total >= policy.max_attempts.saturating_mul(2) {
                    cut_short = true;
                    break 'targets;
                }
                if tries > 0 && total >= policy.max_attempts {
                    continue 'targets;
                }
                tries += 1;
                state[i].tries = tries;
                total += 1;
                let timeout = attempt_timeout.min(deadline - now);
                let result = self.attempt(p, obj, summary, attempt, ids, timeout).await;
                let latency = p.now_ms().saturating_sub(now);
                let breaker = attempt.target.key();
                match result {
                    Ok(served) => {
                        report.record(attempt, AttemptOutcome::Status(200), latency);
                        // (A stream reports when it ends: [`routing::Watched`].)
                        if matches!(served, Served::Json(_)) {
                            self.breakers.borrow_mut().record_success(breaker);
                        }
                        return Ok((self.answer(p, served, &report, attempt, ids), false));
                    }
                    Err(failure) => {
                        report.record(attempt, failure.outcome, latency);
                        if failure.outcome == AttemptOutcome::StaleToken
                            && !state[i].token_refreshed
                        {
                            // The cached Vertex token was refused, and dropped: the same target
                            // again at once with a new one, not as one of its tries (once: a
                            // token cached by another request meanwhile and refused again is an
                            // ordinary retryable failure; a new token refused is final).
                            tries -= 1;
                            state[i].tries = tries;
                            state[i].token_refreshed = true;
                            last.get_or_insert(failure.error);
                            continue;
                        }
                        let retryable = failure.outcome.is_retryable();
                        // The provider refused the gateway's own key (revoked, no access; Gemini
                        // answers an invalid key with a 400 its translator recognises): the
                        // request is not at fault, so the provider's next key may serve it. The
                        // refusal counts against that key's breaker either way, so requests stop
                        // trying it first while it is out.
                        // (A 403 alone may be the request's doing, a feature or file the key
                        // cannot use: it moves to the next key but counts against none.)
                        let credential_refused =
                            matches!(failure.outcome, AttemptOutcome::Status(401))
                                || failure.error.is_credential_refused();
                        let key_refused = (credential_refused
                            || failure.outcome == AttemptOutcome::Status(403))
                            && plan.get(i + 1).is_some_and(|next| {
                                next.target.provider.name == attempt.target.provider.name
                                    && next.model_id == attempt.model_id
                            });
                        // The gateway could not put the request in this target's terms (a
                        // parameter its API cannot take): nothing reached a provider, so the
                        // next target, another provider or fallback model, may serve it.
                        let not_sent = matches!(
                            failure.outcome,
                            AttemptOutcome::Refused | AttemptOutcome::Misconfigured
                        );
                        // A timeout says the provider is slow only when the attempt had the
                        // gateway's own time: a client's shorter `timeoutMs` (or the end of its
                        // total budget) must not open a breaker every request shares.
                        let own_time = failure.outcome != AttemptOutcome::Timeout
                            || timeout >= self.config.timeout_ms.min(self.config.total_timeout_ms);
                        let counts = retryable && own_time;
                        // (A 403 moves on to the provider's next key without counting.)
                        let unpaid = matches!(failure.outcome, AttemptOutcome::Unpaid(_));
                        if counts || credential_refused || unpaid {
                            self.breakers
                                .borrow_mut()
                                .record_failure(breaker, p.now_ms());
                        }
                        let wait = failure
                            .retry_after_ms
                            .unwrap_or_else(|| backoff_ms(&policy, tries, self.random_u32(p)));
                        // A target that could not even be asked does not hide what an earlier
                        // provider answered (its outage is what the client should hear).
                        if !not_sent || last.is_none() {
                            last = Some(failure.error);
                        }
                        // (A redirect is not asked again: it does not change in a backoff; nor is
                        // an account that cannot pay, whose breaker counts it.)
                        if key_refused
                            || not_sent
                            || unpaid
                            || failure.outcome == AttemptOutcome::Redirected
                        {
                            continue 'targets;
                        }
                        if !retryable {
                            // Targets passed over for their breakers came before this one in
                            // the plan: they may serve before its answer stands (not the same
                            // model at the same provider, which would answer the same). Only a
                            // success replaces the answer.
                            // (A refused key is the key's doing: there the provider's other keys
                            // are just the ones to ask.)
                            let same = |j: &usize| {
                                plan[*j].target.provider.name == attempt.target.provider.name
                                    && plan[*j].model_id == attempt.model_id
                            };
                            let keys_fault = credential_refused
                                || failure.outcome == AttemptOutcome::Status(403);
                            let waiting: Vec<usize> = order[pos..]
                                .iter()
                                .copied()
                                .filter(|j| state[*j].deferred && (keys_fault || !same(j)))
                                .collect();
                            if refusal.is_none() {
                                refusal = last.take();
                            }
                            if waiting.is_empty() {
                                break 'targets;
                            }
                            order.truncate(pos);
                            order.extend(waiting);
                            continue 'targets;
                        }
                        if tries >= policy.attempts_per_provider || total >= policy.max_attempts {
                            continue 'targets; // no retry here: no backoff to wait out
                        }
                        if wait > policy.max_delay_ms || p.now_ms() + wait >= deadline {
                            continue 'targets; // not worth the wait: next provider
                        }
                        // Taken out by this very failure (or others' meanwhile): no backoff for
                        // a retry that waits behind the healthy targets.
                        let now = p.now_ms();
                        let waits = {
                            let breakers = self.breakers.borrow();
                            defer(&plan, &breakers, &mut state, &mut order, i, pos, now)
                        };
                        if waits {
                            state[i].not_before = now.saturating_add(wait);
                            continue 'targets;
                        }
                        p.sleep(wait).await;
                    }
                }
            }
        }
        // A refusal stands, unless the loop was cut short before the targets waiting behind it
        // were asked: then the deadline (or the cap) is what happened.
        let error = if cut_short {
            last.or(refusal)
        } else {
            refusal.or(last)
        };
        let error = error
            .unwrap_or_else(|| GatewayError::bad_gateway("No provider could serve the request."));
        let mut out = error_response(&error);
        let retry_may_differ = report.any_retryable();
        if retry_may_differ {
            // The last error may be final, an earlier provider's was not: the client may retry.
            out.headers.retain(|(name, _)| *name != "x-should-retry");
        }
        out.headers.push(("x-switchyard-attempts", report.header()));
        Ok((out, retry_may_differ))
    }

    /// The client's answer from a served attempt, with routing metadata and headers.
    fn answer<B, P: Clock>(
        &self,
        p: &P,
        served: Served<B>,
        report: &RoutingReport,
        attempt: &Attempt,
        ids: Ids<'_>,
    ) -> Outbound<B> {
        let mut headers = vec![
            (
                "x-switchyard-provider",
                attempt.target.provider.name.to_owned(),
            ),
            ("x-switchyard-attempts", report.header()),
        ];
        let body = match served {
            Served::Json(bytes) => {
                headers.push(("content-type", "application/json".to_owned()));
                OutBody::Bytes(report.splice_into(&bytes).unwrap_or(bytes))
            }
            Served::Stream {
                mut prefix,
                body,
                mut transform,
            } => {
                headers.push((
                    "content-type",
                    "text/event-stream; charset=utf-8".to_owned(),
                ));
                headers.push(("cache-control", "no-cache".to_owned()));
                let (id, model, created) = transform.chunk_identity();
                let trailer = report.stream_trailer(
                    id.unwrap_or(ids.generation),
                    model.unwrap_or(&attempt.model_id),
                    created.unwrap_or(ids.created),
                );
                // A short answer may have ended within the first read: its end, held until now,
                // goes into the prefix with the trailer.
                transform.set_trailer(trailer, &mut prefix);
                let transform = Box::new(routing::Watched::new(
                    transform,
                    self.breakers.clone(),
                    attempt.target.key(),
                    p.now_source(),
                ));
                OutBody::Stream {
                    prefix,
                    body,
                    transform,
                    idle_timeout_ms: self.config.stream_idle_timeout_ms,
                }
            }
        };
        Outbound {
            status: 200,
            headers,
            body,
        }
    }

    /// One try at one provider.
    async fn attempt<P: Clock + Upstream>(
        &self,
        p: &P,
        obj: &RawObject<'_>,
        summary: &ChatSummary,
        attempt: &Attempt,
        ids: Ids<'_>,
        timeout: u64,
    ) -> Result<Served<P::Body>, Failure> {
        let started = p.now_ms();
        let target = &attempt.target;
        let provider = target.provider;
        let native = Native::of(provider.protocol, &target.native_model);
        let cfg = self
            .config
            .provider(provider.name)
            .expect("every provider has a config");
        let api_key = cfg
            .api_keys
            .get(usize::from(target.credential))
            .cloned()
            .unwrap_or_default();
        let remaining = |p: &P| {
            timeout
                .saturating_sub(p.now_ms().saturating_sub(started))
                .max(1)
        };
        let mut token_was_cached = false;
        let (request, credential) = match native {
            None => {
                let secret = api_key;
                let req = UpstreamRequest {
                    url: format!("{}/chat/completions", cfg.base_url),
                    headers: vec![
                        ("authorization", format!("Bearer {secret}")),
                        ("content-type", "application/json".to_owned()),
                        ("x-request-id", ids.request.to_owned()),
                    ],
                    body: {
                        let sets = |field: &str| obj.get(field).is_some_and(|v| v.get() != "null");
                        let body = obj.to_json_for(&target.native_model, |key| {
                            openai_compat::request_field(provider.name, sets, key)
                        });
                        openai_compat::without_fields_not_sent(provider.name, &body).unwrap_or(body)
                    },
                };
                (req, secret)
            }
            Some(native) => {
                let body = translated_body(
                    native,
                    obj,
                    &target.native_model,
                    self.config.vertex.structured_outputs,
                )
                .map_err(|e| Failure::new(AttemptOutcome::Refused, e))?;
                let (credential, base, cached) = match native {
                    Native::Vertex(_) => self
                        .vertex_session(p, target.credential, remaining(p))
                        .await
                        .map_err(|e| {
                            let outcome = match e.code.as_deref() {
                                _ if e.is_credential_refused() => AttemptOutcome::Status(401),
                                Some("upstream_timeout") => AttemptOutcome::Timeout,
                                Some("upstream_redirect") => AttemptOutcome::Redirected,
                                // The token endpoint unreachable, or in trouble: try again.
                                Some("upstream_unavailable") => AttemptOutcome::Network,
                                // The gateway's own Vertex settings: nothing was sent.
                                _ => AttemptOutcome::Misconfigured,
                            };
                            Failure::new(outcome, e.with_provider(provider.name))
                        })?,
                    _ => (api_key, cfg.base_url.clone(), false),
                };
                token_was_cached = cached;
                let mut headers = native.auth_headers(&credential);
                headers.push(("x-request-id", ids.request.to_owned()));
                let req = UpstreamRequest {
                    url: native.endpoint(&base, &target.native_model, summary.stream),
                    headers,
                    body,
                };
                (req, credential)
            }
        };
        // A key whose cool-down is over gets this request as its one trial (only now, when
        // something is sent): others keep away from it until the trial reports.
        self.breakers
            .borrow_mut()
            .admit(target.key(), p.now_ms(), remaining(p));
        let resp = p
            .fetch(request, remaining(p))
            .await
            .map_err(|e| transport_failure(provider, &e))?;
        let announced_over = |max: usize| resp.content_length.is_some_and(|n| n > max as u64);
        if !(200..300).contains(&resp.status) {
            // An error body over the limit is not worth reading: the status speaks for it.
            let bytes = if announced_over(MAX_ERROR_BODY_BYTES) {
                p.cancel(resp.body);
                Vec::new()
            } else {
                p.read_body(resp.body, remaining(p), MAX_ERROR_BODY_BYTES)
                    .await
                    .unwrap_or_default()
            };
            let wait = retry_after_ms(
                resp.retry_after.as_deref(),
                resp.retry_after_ms.as_deref(),
                p.now_ms(),
            );
            let mut error = match native {
                None => {
                    upstream_error(provider, resp.status, resp.retry_after, &bytes, &credential)
                }
                Some(n) => n.translate_error(resp.status, resp.retry_after, &bytes),
            };
            error.message = scrub(std::mem::take(&mut error.message), &credential);
            if resp.status == 401 {
                if let Some(stale) =
                    self.drop_refused_token(target, native, &credential, token_was_cached)
                {
                    return Err(stale);
                }
            }
            if resp.status == 401 || error.is_credential_refused() || refuses_key(&error) {
                error = credential_refused(target);
            }
            let unpaid = for_want_of_payment(resp.status, &error);
            if unpaid {
                // The account behind the gateway's credential cannot pay (DeepSeek's
                // "Insufficient Balance"): the operator's to settle, not the request's fault.
                let var = target.provider.credential_variable(target.number());
                error = GatewayError::upstream(
                    502,
                    format!(
                        "The provider `{}` refused to serve on the gateway's credential ({var}) \
                         for want of payment ({}); your gateway key is fine, the gateway's \
                         operator must settle that account.",
                        provider.name, error.message
                    ),
                )
                .with_code(crate::error::PAYMENT_REQUIRED);
            }
            if (300..400).contains(&resp.status) {
                // Not followed (it would take the key and the prompt elsewhere): the base URL
                // is not where the API answers (most often the operator's setting; a client's
                // retry meets the same), and another target may serve.
                let error = GatewayError::bad_gateway(format!(
                    "The provider `{}` answered with a redirect (HTTP {}), which the gateway \
                     does not follow: set {}_BASE_URL to the address that serves its API.",
                    provider.name, resp.status, provider.env
                ))
                .with_code("upstream_redirect")
                .with_provider(provider.name);
                return Err(Failure::new(AttemptOutcome::Redirected, error));
            }
            // A wait the provider put in its body (Google's RetryInfo) counts like the header.
            let wait =
                wait.or_else(|| retry_after_ms(error.retry_after.as_deref(), None, p.now_ms()));
            if error.retry_after.is_none() {
                // Only `retry-after-ms` given: the client hears it in whole seconds.
                error.retry_after = wait.map(|ms| ms.div_ceil(1000).to_string());
            }
            return Err(Failure {
                outcome: if unpaid {
                    AttemptOutcome::Unpaid(resp.status)
                } else {
                    AttemptOutcome::Status(resp.status)
                },
                error: error.with_provider(provider.name),
                retry_after_ms: wait,
            });
        }
        if !summary.stream {
            if announced_over(MAX_RESPONSE_BYTES) {
                p.cancel(resp.body);
                return Err(transport_failure(provider, &FetchError::TooLarge));
            }
            let bytes = p
                .read_body(resp.body, remaining(p), MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| transport_failure(provider, &e))?;
            let malformed = |e: GatewayError| {
                Failure::new(AttemptOutcome::Malformed, e.with_provider(provider.name))
            };
            return match native {
                None => {
                    match CompletionShape::of(&bytes) {
                        Some(CompletionShape {
                            choices: Some(_), ..
                        }) => Ok(Served::Json(bytes)),
                        // A failure reported with a 2xx status: a failure, its message kept.
                        Some(CompletionShape { error: Some(_), .. }) => Err(malformed(
                            upstream_error(provider, 502, None, &bytes, &credential),
                        )),
                        _ => Err(malformed(GatewayError::bad_gateway(format!(
                            "The provider `{}` returned a body that is not a chat completion \
                         (valid UTF-8 JSON with `choices`).",
                            provider.name
                        )))),
                    }
                }
                Some(_) if crate::chat_body::too_complex(&bytes) => {
                    Err(malformed(crate::chat_body::too_complex_error("an answer")))
                }
                Some(n) => {
                    let mut answer = n.translate_response(&bytes).map_err(malformed)?;
                    answer.id = ids.generation.to_owned();
                    answer.model = attempt.model_id.clone();
                    answer.created = ids.created;
                    Ok(Served::Json(openai::encode_response(&answer)))
                }
            };
        }
        let mut transform: Box<dyn StreamTransform> = match native {
            // Their ends wait for the routing trailer, known once this attempt has served.
            None => Box::new(PassThroughStream::new(provider.name).awaiting_trailer()),
            Some(n) => Box::new(TranslatedStream::new(
                n,
                ChunkEncoder::new(
                    ids.generation,
                    &attempt.model_id,
                    ids.created,
                    summary.include_usage,
                )
                .awaiting_trailer(),
            )),
        };
        let mut body = resp.body;
        let mut prefix = Vec::new();
        loop {
            match p.next_chunk(&mut body, remaining(p)).await {
                Ok(Some(chunk)) => transform.push(&chunk, &mut prefix),
                Ok(None) => transform.finish(&mut prefix, None),
                Err(e) => {
                    p.cancel(body);
                    let outcome = match e {
                        FetchError::Timeout => AttemptOutcome::Timeout,
                        FetchError::Network(_) | FetchError::TooLarge => {
                            AttemptOutcome::StreamFailed
                        }
                    };
                    return Err(Failure::new(outcome, transport_failure(provider, &e).error));
                }
            }
            match transform.progress() {
                Progress::Pending if prefix.len() > MAX_PREFIX_BYTES => {
                    // Events without content, held for the client until content comes: a
                    // provider that keeps sending them would fill the isolate's memory.
                    p.cancel(body);
                    return Err(Failure::new(
                        AttemptOutcome::StreamFailed,
                        GatewayError::bad_gateway(format!(
                            "The stream from the provider `{}` sent over {} MiB before any content.",
                            provider.name,
                            MAX_PREFIX_BYTES >> 20
                        ))
                        .with_provider(provider.name),
                    ));
                }
                Progress::Pending if !transform.closed() => continue,
                Progress::Pending => {
                    // Ended without content, and without an error of its own: a cut.
                    return Err(Failure::new(
                        AttemptOutcome::StreamFailed,
                        GatewayError::bad_gateway(format!(
                            "The stream from the provider `{}` ended before any content.",
                            provider.name
                        ))
                        .with_provider(provider.name),
                    ));
                }
                Progress::Failed { error, retryable } => {
                    let mut error = error.clone().with_provider(provider.name);
                    error.message = scrub(std::mem::take(&mut error.message), &credential);
                    let (status, retryable) = (error.status, *retryable);
                    p.cancel(body);
                    // The provider refused the gateway's key inside its stream: as when it
                    // answers 401 (or 403) before it.
                    if status == 401 || error.is_credential_refused() {
                        if let Some(stale) =
                            self.drop_refused_token(target, native, &credential, token_was_cached)
                        {
                            return Err(stale);
                        }
                        let error = credential_refused(target);
                        return Err(Failure::new(AttemptOutcome::Status(401), error));
                    }
                    let outcome = match status {
                        403 => AttemptOutcome::Status(403),
                        _ => AttemptOutcome::StreamError { retryable },
                    };
                    return Err(Failure::new(outcome, error));
                }
                Progress::Content => {
                    return Ok(Served::Stream {
                        prefix,
                        body,
                        transform,
                    });
                }
            }
        }
    }

    /// A provider refused the gateway's own credential (a 401, or in a stream an error its
    /// translator reads as one). Vertex's access token then goes, if it is still the one
    /// refused (a concurrent request may have put a new one there); one from the cache says
    /// nothing yet about the account: the `StaleToken` failure returned, and the next try
    /// exchanges a new one. Otherwise the caller answers with [`credential_refused`].
    fn drop_refused_token(
        &self,
        target: &routing::Target,
        native: Option<Native>,
        credential: &str,
        token_was_cached: bool,
    ) -> Option<Failure> {
        if !matches!(native, Some(Native::Vertex(_))) {
            return None;
        }
        let mut tokens = self.vertex_tokens.borrow_mut();
        if tokens
            .get(&target.credential)
            .is_some_and(|c| c.holds(credential))
        {
            tokens.remove(&target.credential);
        }
        drop(tokens);
        token_was_cached.then(|| {
            let error = GatewayError::bad_gateway(
                "Vertex AI refused the gateway's cached access token; a new one is fetched.",
            )
            .with_provider(target.provider.name);
            Failure::new(AttemptOutcome::StaleToken, error)
        })
    }

    fn random_u32<P: Clock>(&self, p: &P) -> u32 {
        let mut b = [0u8; 4];
        p.fill_random(&mut b);
        u32::from_le_bytes(b)
    }

    fn random_unit<P: Clock>(&self, p: &P) -> f64 {
        self.random_u32(p) as f64 / (u32::MAX as f64 + 1.0)
    }
}

/// Headers an idempotent replay repeats.
const REPLAYED_HEADERS: &[&str] = &[
    "content-type",
    "x-switchyard-provider",
    "x-switchyard-attempts",
    "x-generation-id",
    "retry-after",
];

/// The most JSON values a request may hold (about; strings the translators parse included) to
/// be translated for another protocol. Translating builds trees of the request, each value
/// costing a hundred bytes or more, in an isolate of 128 MB that concurrent requests share: a
/// few MiB of tiny content parts would otherwise fill it. Long conversations with tools hold a
/// few thousand.
pub const MAX_TRANSLATED_VALUES: usize = 100_000;

/// The provider's body for a translated protocol, without the gateway's own options.
fn translated_body(
    native: Native,
    obj: &RawObject<'_>,
    native_model: &str,
    vertex_structured_outputs: bool,
) -> Result<Vec<u8>, GatewayError> {
    let json = obj.to_json_with_model(native_model);
    let too_complex = |n: usize| {
        GatewayError::new_payload_too_large(format!(
            "The request holds about {n} JSON values (content parts, messages, tool arguments \
             and JSON results); translating it for another provider's API takes at most \
             {MAX_TRANSLATED_VALUES}. OpenAI-compatible providers take it as it is."
        ))
        .with_code("request_too_complex")
    };
    let outside = crate::chat_body::json_values(&json);
    if outside > MAX_TRANSLATED_VALUES {
        return Err(too_complex(outside));
    }
    let mut chat = ChatRequest::from_json(&json)?;
    drop(json);
    let all = outside + chat.embedded_json_values(native.parses_tool_results());
    if all > MAX_TRANSLATED_VALUES {
        return Err(too_complex(all));
    }
    chat.extra.remove("providerOptions");
    native.build_request(&chat, native_model, vertex_structured_outputs)
}

fn transport_failure(provider: &'static ProviderSpec, e: &FetchError) -> Failure {
    let outcome = match e {
        FetchError::Timeout => AttemptOutcome::Timeout,
        FetchError::Network(_) => AttemptOutcome::Network,
        // Its size follows from the request: another attempt would only pay for it again.
        FetchError::TooLarge => AttemptOutcome::TooLarge,
    };
    Failure::new(outcome, fetch_error(provider, e))
}

/// Removes a credential from a message, in case a provider echoes it.
fn scrub(message: String, secret: &str) -> String {
    if secret.len() >= 8 && message.contains(secret) {
        message.replace(secret, "[redacted]")
    } else {
        message
    }
}

/// A provider that could not be reached: 502, or 504 when it did not answer in time.
pub(crate) fn fetch_error(provider: &'static ProviderSpec, e: &FetchError) -> GatewayError {
    match e {
        FetchError::Timeout => GatewayError::timeout(format!(
            "The provider `{}` did not answer in time.",
            provider.name
        )),
        FetchError::Network(detail) => GatewayError::bad_gateway(format!(
            "Could not reach the provider `{}`: {detail}",
            provider.name
        )),
        FetchError::TooLarge => GatewayError::bad_gateway(format!(
            "The provider `{}` sent an answer over {} MiB, the most the gateway reads.",
            provider.name,
            MAX_RESPONSE_BYTES >> 20
        ))
        .with_code("upstream_response_too_large"),
    }
    .with_provider(provider.name)
}

/// What a 2xx answer of an OpenAI-compatible provider is checked for before it is passed on:
/// a JSON object in UTF-8 with a `choices` array (or an `error`: a failure with a 2xx status).
#[derive(serde::Deserialize)]
struct CompletionShape {
    choices: Option<Vec<serde::de::IgnoredAny>>,
    error: Option<serde::de::IgnoredAny>,
}

impl CompletionShape {
    fn of(bytes: &[u8]) -> Option<Self> {
        // The skipped strings are not checked by the parser: the whole body is, first. (A
        // derived struct also takes an array: `[[], null]` is no completion.)
        std::str::from_utf8(bytes).ok()?;
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

/// The largest non-streamed provider answer the gateway reads: it is held whole, copied into
/// the core and parsed, in an isolate of 128 MB shared by concurrent requests (room for a
/// 16k-token answer with 20 `top_logprobs` per token, about 19 MiB). One announced
/// longer (`Content-Length`) is not read at all; one that turns out longer while it is read
/// (no length announced, or a compressed body) is dropped at the limit. Streams are bounded per
/// event instead ([`crate::sse::MAX_EVENT_BYTES`]).
pub const MAX_RESPONSE_BYTES: usize = 24 * 1024 * 1024;

/// The most a stream may send before its first content (role chunks, keep-alives, empty
/// deltas), which is held until content decides the attempt.
pub const MAX_PREFIX_BYTES: usize = 1024 * 1024;

/// The most of a provider's error body the gateway reads (its message is all it needs).
pub const MAX_ERROR_BODY_BYTES: usize = 1024 * 1024;

/// The error for a provider that refused the gateway's credential (HTTP 401): a 502
/// `upstream_authentication_failed` (as the native providers' translators and the Vertex token
/// exchange answer) naming the provider and the variable that holds the credential, never the
/// provider's message.
fn credential_refused(target: &routing::Target) -> GatewayError {
    let var = target.provider.credential_variable(target.number());
    GatewayError::credential_refused(format!(
        "The provider `{}` did not accept the gateway's credential ({var}); your gateway key is \
         fine, the gateway's operator must renew that credential.",
        target.provider.name
    ))
}

/// A 400 that is the provider refusing the gateway's key (xAI answers a wrong key so, where
/// OpenAI answers 401, with the same words and part of the key).
fn refuses_key(error: &GatewayError) -> bool {
    // (The start of the message only: a client's own words quoted back in a 400 must not
    // count against the gateway's keys.)
    let message = error.message.trim_start();
    error.status == 400
        && (message.starts_with("Incorrect API key provided")
            // (also sent percent-encoded)
            || message.starts_with("Incorrect%20API%20key%20provided")
            || error.code.as_deref() == Some("invalid_api_key"))
}

/// Whether the provider refused for want of payment: 402 (DeepSeek's "Insufficient Balance"),
/// OpenAI's 429 `insufficient_quota` ("You exceeded your current quota": no retry ends it),
/// Anthropic's 400 "Your credit balance is too low".
fn for_want_of_payment(status: u16, error: &GatewayError) -> bool {
    match status {
        402 => true,
        429 => error.code.as_deref() == Some("insufficient_quota"),
        // (The start only: a client's words quoted back must not count against a key.)
        400 => error
            .message
            .trim_start_matches("Anthropic: ")
            .starts_with("Your credit balance is too low"),
        _ => false,
    }
}

/// An error answer from an OpenAI-compatible provider, kept in OpenAI's shape: its status, message,
/// param and code, the provider named. The provider's credential is scrubbed from the message in
/// case the provider echoes it.
pub(crate) fn upstream_error(
    provider: &'static ProviderSpec,
    status: u16,
    retry_after: Option<String>,
    body: &[u8],
    secret: &str,
) -> GatewayError {
    // (An error too complex to parse is reported by its text.)
    let parsed: Option<serde_json::Value> = if crate::chat_body::too_complex(body) {
        None
    } else {
        serde_json::from_slice(body).ok()
    };
    let err = parsed.as_ref().map(|v| v.get("error").unwrap_or(v));
    let field = |name: &str| -> Option<String> {
        match err?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let message = match err {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => field("message")
            .or_else(|| field("detail"))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    format!("The provider answered with HTTP {status}.")
                } else {
                    text.chars().take(1000).collect()
                }
            }),
    };
    let message = scrub(message, secret);
    let mut e = GatewayError::upstream(status, message)
        .with_provider(provider.name)
        .with_retry_after(retry_after);
    e.param = field("param").map(|p| scrub(p, secret));
    e.code = field("code")
        .or_else(|| {
            err.and_then(|e| e.get("type"))
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .map(|c| scrub(c, secret));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers;

    fn openai() -> &'static ProviderSpec {
        providers::find("openai").unwrap()
    }

    #[test]
    fn an_openai_error_body_keeps_status_message_param_and_code() {
        let body = br#"{"error":{"message":"Invalid 'temperature': 3 > 2","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}"#;
        let e = upstream_error(openai(), 400, None, body, "sk-xyz-12345678");
        assert_eq!(e.status, 400);
        assert_eq!(e.message, "Invalid 'temperature': 3 > 2");
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert_eq!(e.code.as_deref(), Some("invalid_value"));
        assert_eq!(e.provider, Some("openai"));
    }

    #[test]
    fn rate_limits_keep_retry_after_and_other_shapes_are_understood() {
        let e = upstream_error(
            openai(),
            429,
            Some("7".into()),
            br#"{"error":"slow down"}"#,
            "",
        );
        assert_eq!((e.status, e.message.as_str()), (429, "slow down"));
        assert_eq!(e.retry_after.as_deref(), Some("7"));
        assert_eq!(e.error_type(), "rate_limit_error");
        let e = upstream_error(openai(), 422, None, br#"{"detail":"bad field"}"#, "");
        assert_eq!(e.message, "bad field");
        let e = upstream_error(openai(), 503, None, b"<html>upstream down</html>", "");
        assert_eq!(e.message, "<html>upstream down</html>");
        let e = upstream_error(openai(), 500, None, b"", "");
        assert_eq!(e.message, "The provider answered with HTTP 500.");
    }

    #[test]
    fn an_echoed_credential_is_scrubbed() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-live-abcdef123456."}}"#;
        let e = upstream_error(openai(), 401, None, body, "sk-live-abcdef123456");
        assert!(!e.message.contains("sk-live-abcdef123456"), "{}", e.message);
        assert!(e.message.contains("[redacted]"));
    }

    #[test]
    fn transport_failures_are_502_or_504() {
        assert_eq!(
            fetch_error(openai(), &FetchError::Network("refused".into())).status,
            502
        );
        assert_eq!(fetch_error(openai(), &FetchError::Timeout).status, 504);
    }
}

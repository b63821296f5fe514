//! Vertex AI access tokens: a service-account JWT traded at Google's token endpoint, cached in
//! the isolate until shortly before it expires.

use super::Gateway;
use crate::error::GatewayError;
use crate::platform::{Clock, Upstream, UpstreamRequest};
use crate::providers::vertex::{self, ServiceAccount};
use futures::channel::oneshot;
use std::cell::RefCell;
use std::collections::HashMap;

/// Google's OAuth token endpoint, used when neither the settings nor the service account name one.
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// How long the token exchange may take.
const TOKEN_TIMEOUT_MS: u64 = 10_000;

impl Gateway {
    /// An access token for Vertex AI with the service account of `credential` (one token cache
    /// per service account), the project/location base URL to call, and whether the token came
    /// from the cache.
    pub(super) async fn vertex_session<P: Clock + Upstream>(
        &self,
        p: &P,
        credential: u8,
        timeout_ms: u64,
    ) -> Result<(String, String, bool), GatewayError> {
        let cfg = self
            .config
            .provider("vertex")
            .expect("vertex is a provider");
        let json = cfg
            .api_keys
            .get(usize::from(credential))
            .map(String::as_str)
            .unwrap_or_default();
        let sa = ServiceAccount::from_json(json.as_bytes())?;
        let project = self
            .config
            .vertex
            .project
            .clone()
            .or_else(|| sa.project_id.clone())
            .ok_or_else(|| {
                GatewayError::not_configured(
                    "Vertex AI needs a project: set VERTEX_PROJECT or use a service account with project_id.",
                )
            })?;
        let base = vertex::location_base(&cfg.base_url, &project, &self.config.vertex.location);
        loop {
            let now = p.now_ms() / 1000;
            if let Some(token) = self
                .vertex_tokens
                .borrow()
                .get(&credential)
                .and_then(|cache| cache.get(now))
            {
                return Ok((token.to_owned(), base, true));
            }
            // Another request is exchanging a token for this account: its token (or its
            // failure) serves this one too, rather than every request signing and calling
            // Google at once when the isolate starts or the token nears its end.
            let waiting = self
                .vertex_exchanges
                .borrow_mut()
                .get_mut(&credential)
                .map(|waiters| {
                    let (tx, rx) = futures::channel::oneshot::channel();
                    waiters.push(tx);
                    rx
                });
            match waiting {
                Some(rx) => match rx.await {
                    Ok(result) => return result.map(|token| (token, base, false)),
                    // That request went away before its exchange ended: look again.
                    Err(_) => continue,
                },
                None => break,
            }
        }
        self.vertex_exchanges
            .borrow_mut()
            .insert(credential, Vec::new());
        let _leader = Exchanging {
            exchanges: &self.vertex_exchanges,
            credential,
        };
        let result = self.exchange_token(p, &sa, timeout_ms).await;
        if let Ok((token, expires_in, now)) = &result {
            self.vertex_tokens
                .borrow_mut()
                .entry(credential)
                .or_default()
                .put(token.clone(), *expires_in, *now);
        }
        let result = result.map(|(token, ..)| token);
        let waiters = self
            .vertex_exchanges
            .borrow_mut()
            .remove(&credential)
            .unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        result.map(|token| (token, base, false))
    }

    /// Trades a signed assertion for an access token: the token, its lifetime in seconds and
    /// when it was asked for (Unix seconds).
    async fn exchange_token<P: Clock + Upstream>(
        &self,
        p: &P,
        sa: &ServiceAccount,
        timeout_ms: u64,
    ) -> Result<(String, u64, u64), GatewayError> {
        let now = p.now_ms() / 1000;
        let token_url = self.config.vertex.token_url.clone().unwrap_or_else(|| {
            if sa.token_uri.is_empty() {
                GOOGLE_TOKEN_URL.to_owned()
            } else {
                sa.token_uri.clone()
            }
        });
        let assertion = vertex::signed_assertion(sa, now, &token_url)?;
        // Within the attempt's time, at most TOKEN_TIMEOUT_MS.
        let started = p.now_ms();
        let timeout = timeout_ms.min(TOKEN_TIMEOUT_MS);
        let resp = p
            .fetch(
                UpstreamRequest {
                    url: token_url,
                    headers: vec![(
                        "content-type",
                        "application/x-www-form-urlencoded".to_owned(),
                    )],
                    body: vertex::token_request_body(&assertion).into_bytes(),
                },
                timeout,
            )
            .await
            .map_err(|e| {
                super::chat::fetch_error(crate::providers::find("vertex").expect("known"), &e)
            })?;
        let left = timeout
            .saturating_sub(p.now_ms().saturating_sub(started))
            .max(1);
        let body = p
            .read_body(resp.body, left, super::chat::MAX_ERROR_BODY_BYTES)
            .await
            .unwrap_or_default();
        let (token, expires_in) = vertex::parse_token_response(resp.status, &body, &assertion)?;
        Ok((token, expires_in, now))
    }
}

/// Requests waiting for a token exchange under way, per service account.
pub(super) type Exchanges =
    RefCell<HashMap<u8, Vec<oneshot::Sender<Result<String, GatewayError>>>>>;

/// The exchange of the request that is making it: should that request go away mid-way, the
/// waiting ones are told (their channels close) and one of them exchanges instead.
struct Exchanging<'a> {
    exchanges: &'a Exchanges,
    credential: u8,
}

impl Drop for Exchanging<'_> {
    fn drop(&mut self) {
        if let Ok(mut exchanges) = self.exchanges.try_borrow_mut() {
            exchanges.remove(&self.credential);
        }
    }
}

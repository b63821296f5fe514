//! Vertex AI access tokens: a service-account JWT traded at Google's token endpoint, cached in
//! the isolate until shortly before it expires.

use super::Gateway;
use crate::error::GatewayError;
use crate::platform::{Clock, Upstream, UpstreamRequest};
use crate::providers::vertex::{self, ServiceAccount};

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
        // It goes into the URL's path: one segment of what project ids hold.
        if !crate::config::is_project_id(&project) {
            return Err(GatewayError::not_configured(
                "The Vertex AI project is not a project id (lowercase letters, digits, `-`, and \
                 `.` or `:` for a domain's): check VERTEX_PROJECT or the service account's \
                 project_id.",
            ));
        }
        let base = vertex::location_base(&cfg.base_url, &project, &self.config.vertex.location);
        let now = p.now_ms() / 1000;
        if let Some(token) = self
            .vertex_tokens
            .borrow()
            .get(&credential)
            .and_then(|cache| cache.get(now))
        {
            return Ok((token.to_owned(), base, true));
        }
        // Requests that need a token at the same moment each exchange one: in workerd a request
        // cannot wait on work another request does (it is cancelled as hung).
        // The variable that holds this account, for a refusal to name.
        let number = cfg.key_numbers.get(usize::from(credential)).copied();
        let variable = cfg
            .spec
            .credential_variable(number.unwrap_or(credential + 1));
        let (token, expires_in, now) = self.exchange_token(p, &sa, &variable, timeout_ms).await?;
        self.vertex_tokens
            .borrow_mut()
            .entry(credential)
            .or_default()
            .put(token.clone(), expires_in, now);
        Ok((token, base, false))
    }

    /// Trades a signed assertion for an access token: the token, its lifetime in seconds and
    /// when it was asked for (Unix seconds).
    async fn exchange_token<P: Clock + Upstream>(
        &self,
        p: &P,
        sa: &ServiceAccount,
        variable: &str,
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
        let assertion = vertex::signed_assertion(sa, now)?;
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
        let (token, expires_in) =
            vertex::parse_token_response(resp.status, &body, &assertion, variable)?;
        Ok((token, expires_in, now))
    }
}

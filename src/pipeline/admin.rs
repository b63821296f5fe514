//! The admin API for gateway keys: `POST /admin/keys`, `GET /admin/keys`,
//! `PATCH /admin/keys/{id}`, `DELETE /admin/keys/{id}`.
//!
//! KV layout: `keys/hash/<sha256>` → record (looked up on requests), `keys/id/<id>` → record, with
//! the public view as KV metadata so one `list` call answers `GET /admin/keys`.

use super::{Gateway, Json};
use crate::auth::{self, KeyRecord};
use crate::error::GatewayError;
use crate::ids;
use crate::platform::{Clock, Kv};
use crate::routing::RoutingOptions;
use serde::{Deserialize, Serialize};

const BY_HASH: &str = "keys/hash/";
const BY_ID: &str = "keys/id/";
const MAX_NAME_LEN: usize = 200;

/// A key as listings show it: never the secret, never its hash.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyView {
    pub id: String,
    pub object: String,
    pub name: String,
    pub created_at: u64,
    /// `sk-sy-…abcd`: enough to tell keys apart.
    pub redacted_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingOptions>,
}

impl From<&KeyRecord> for KeyView {
    fn from(r: &KeyRecord) -> Self {
        KeyView {
            id: r.id.clone(),
            object: "gateway_key".into(),
            name: r.name.clone(),
            created_at: r.created_at,
            redacted_key: format!("{}…{}", auth::KEY_PREFIX, r.last4),
            routing: r.routing.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: Option<serde_json::Value>,
    routing: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    /// Present (`null` included, which is refused: a name cannot be cleared) or absent.
    #[serde(default, deserialize_with = "present_value")]
    name: Option<serde_json::Value>,
    /// Present (`null` included, which clears the defaults) or absent (left as they are).
    #[serde(default, deserialize_with = "present")]
    routing: Option<Box<serde_json::value::RawValue>>,
}

/// A field that is there, whatever its value: `null` stays `Some(Value::Null)`.
fn present_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// A field that is there, whatever its value: `null` stays `Some("null")`.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Box<serde_json::value::RawValue>>, D::Error> {
    Box::<serde_json::value::RawValue>::deserialize(d).map(Some)
}

/// Fields of the admin contract that later releases add; refused clearly until then.
const NOT_YET: &[&str] = &["team", "budget", "rate_limit", "models", "expires_at"];

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(field) = NOT_YET.iter().find(|f| map.contains_key(**f)) {
            return Err(GatewayError::invalid_param(
                field,
                format!("`{field}` is not supported by this gateway version yet."),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid_request(format!("The request body is not a valid key object: {e}."))
    })
}

fn valid_name(name: Option<serde_json::Value>) -> Result<String, GatewayError> {
    match name {
        Some(serde_json::Value::String(s))
            if !s.trim().is_empty() && s.trim().chars().count() <= MAX_NAME_LEN =>
        {
            Ok(s.trim().to_owned())
        }
        Some(serde_json::Value::String(_)) => Err(GatewayError::invalid_param(
            "name",
            format!("`name` must be 1 to {MAX_NAME_LEN} characters."),
        )),
        Some(_) => Err(GatewayError::invalid_param(
            "name",
            "`name` must be a string.",
        )),
        None => Err(GatewayError::invalid_param("name", "`name` is required.")),
    }
}

/// The most KV keeps as one entry's metadata (Cloudflare's limit), where a key's public view lives.
const MAX_VIEW_BYTES: usize = 1024;

async fn store<P: Kv>(p: &P, rec: &KeyRecord) -> Result<(), GatewayError> {
    let json = serde_json::to_string(rec).expect("a key record serializes");
    let view = serde_json::to_string(&KeyView::from(rec)).expect("a key view serializes");
    if view.len() > MAX_VIEW_BYTES {
        let param = if rec.routing.is_some() {
            "routing"
        } else {
            "name"
        };
        return Err(GatewayError::invalid_param(
            param,
            format!(
                "The key's name and routing defaults take {} bytes; at most {MAX_VIEW_BYTES} fit.",
                view.len()
            ),
        ));
    }
    // The listed entry first: should the second write fail, the key is listed (and can be
    // deleted; it never worked, and an update answers 404) rather than working unlisted.
    p.put(&format!("{BY_ID}{}", rec.id), &json, Some(&view), None)
        .await
        .map_err(GatewayError::key_store)?;
    p.put(&format!("{BY_HASH}{}", rec.hash), &json, None, None)
        .await
        .map_err(GatewayError::key_store)
}

async fn load<P: Kv>(p: &P, id: &str) -> Result<KeyRecord, GatewayError> {
    if !ids::is_prefixed("key", id) {
        // Not one of ours (KV would refuse a name this long, say): not looked up, not echoed
        // (it may be a secret pasted in the wrong place).
        return Err(GatewayError::not_found(
            "No gateway key has this id (key ids look like `key_01J…`, as POST /admin/keys returned).",
        ));
    }
    let json = p
        .get(&format!("{BY_ID}{id}"))
        .await
        .map_err(GatewayError::key_store)?;
    json.and_then(|j| serde_json::from_str(&j).ok())
        .ok_or_else(|| GatewayError::not_found(format!("No gateway key has the id `{id}`.")))
}

/// Deletes a revoked key's entries, the lookup entry first; a refusal is tried again a little
/// later (KV takes one write a second per key: a delete right after an update's write may be
/// refused), so that a key revoked here does not come back elsewhere.
async fn purge<P: Kv + Clock>(p: &P, rec: &KeyRecord, rounds: u32) -> Result<(), GatewayError> {
    let mut failure = None;
    for round in 0..rounds {
        if round > 0 {
            p.sleep(1_100).await;
        }
        let deleted = match p.delete(&format!("{BY_HASH}{}", rec.hash)).await {
            Ok(()) => p.delete(&format!("{BY_ID}{}", rec.id)).await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(()) => return Ok(()),
            Err(e) => failure = Some(e),
        }
    }
    Err(GatewayError::key_store(failure.expect("tried")))
}

/// Looks a secret's record up by its digest (uncached; the caller caches).
pub(super) async fn lookup<P: Kv>(p: &P, hash: &str) -> Result<Option<KeyRecord>, GatewayError> {
    let json = p.get(&format!("{BY_HASH}{hash}")).await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

impl Gateway {
    /// Routing defaults given to the admin API (`null` clears them on update). Fallback models
    /// must be models this gateway knows, or every request made with the key would fail.
    fn routing(
        &self,
        raw: Option<&serde_json::value::RawValue>,
    ) -> Result<Option<RoutingOptions>, GatewayError> {
        let opts = match raw.map(|r| r.get()) {
            None | Some("null") => return Ok(None),
            Some(json) => RoutingOptions::parse(json, "routing")?,
        };
        for model in opts.models.iter().flatten() {
            if let Err(e) = crate::routing::resolve(model, &self.config) {
                // Not configured yet is fine (credentials can be added later); unknown is not.
                if e.status == 404 {
                    return Err(GatewayError::invalid_param(
                        "routing.models",
                        format!("Unknown fallback model `{model}` in `routing.models`."),
                    ));
                }
            }
        }
        Ok(Some(opts))
    }

    pub(super) async fn create_key<P: Kv + Clock>(
        &self,
        p: &P,
        body: &[u8],
    ) -> Result<Json, GatewayError> {
        let req: CreateKey = parse_body(body)?;
        let name = valid_name(req.name)?;
        let routing = self.routing(req.routing.as_deref())?;
        let mut secret_bytes = [0u8; 24];
        p.fill_random(&mut secret_bytes);
        let secret = auth::new_secret(secret_bytes);
        let mut id_random = [0u8; 10];
        p.fill_random(&mut id_random);
        let now = p.now_ms();
        let rec = KeyRecord {
            id: ids::prefixed("key", now, id_random),
            name,
            hash: auth::hash_secret(&secret),
            created_at: now / 1000,
            last4: secret[secret.len() - 4..].to_owned(),
            routing,
        };
        store(p, &rec).await?;
        self.key_cache.borrow_mut().forget(&rec.hash);
        #[derive(Serialize)]
        struct Created<'a> {
            #[serde(flatten)]
            view: KeyView,
            /// The secret, shown this once.
            key: &'a str,
        }
        let body = serde_json::to_vec(&Created {
            view: KeyView::from(&rec),
            key: &secret,
        })
        .expect("serializes");
        Ok((201, body))
    }

    pub(super) async fn list_keys<P: Kv>(&self, p: &P) -> Result<Json, GatewayError> {
        let entries = p.list(BY_ID).await.map_err(GatewayError::key_store)?;
        let mut data: Vec<KeyView> = entries
            .iter()
            .filter_map(|(_, meta)| serde_json::from_str(meta.as_deref()?).ok())
            .collect();
        data.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        #[derive(Serialize)]
        struct List {
            object: &'static str,
            data: Vec<KeyView>,
        }
        let body = serde_json::to_vec(&List {
            object: "list",
            data,
        })
        .expect("serializes");
        Ok((200, body))
    }

    pub(super) async fn update_key<P: Kv + Clock>(
        &self,
        p: &P,
        id: &str,
        body: &[u8],
    ) -> Result<Json, GatewayError> {
        let req: UpdateKey = parse_body(body)?;
        let mut rec = load(p, id).await?;
        if let Some(name) = req.name {
            rec.name = valid_name(Some(name))?;
        }
        if req.routing.is_some() {
            rec.routing = self.routing(req.routing.as_deref())?;
        }
        let not_found = || GatewayError::not_found(format!("No gateway key has the id `{id}`."));
        let revoked_here = || {
            self.key_cache
                .borrow()
                .is_revoked(&rec.hash, p.now_ms(), self.config.key_cache_ttl_ms)
        };
        // A key whose lookup entry is gone was revoked (its listing entry outlived a failed
        // delete, or KV still shows a deletion made here): updating it must not bring it back.
        if revoked_here() {
            // (An earlier update's clean-up below may have failed: one more go at it, the
            // answer the same either way.)
            let _ = purge(p, &rec, 1).await;
            return Err(not_found());
        }
        if lookup(p, &rec.hash)
            .await
            .map_err(GatewayError::key_store)?
            .is_none()
        {
            return Err(not_found());
        }
        store(p, &rec).await?;
        if revoked_here() {
            // Deleted in this isolate while this update was writing: the write brought the
            // lookup entry back, so it goes again.
            purge(p, &rec, 3).await?;
            return Err(not_found());
        }
        self.key_cache.borrow_mut().forget(&rec.hash);
        let body = serde_json::to_vec(&KeyView::from(&rec)).expect("serializes");
        Ok((200, body))
    }

    pub(super) async fn delete_key<P: Kv + Clock>(
        &self,
        p: &P,
        id: &str,
    ) -> Result<Json, GatewayError> {
        let rec = load(p, id).await?;
        // This isolate knows it at once, before anything is written (an update racing this
        // deletion sees it after its own write, whatever KV shows), and whatever KV shows next.
        // Then the hash entry: once it is gone the key no longer authenticates anywhere.
        self.key_cache
            .borrow_mut()
            .revoke(&rec.hash, p.now_ms(), self.config.key_cache_ttl_ms);
        if let Err(e) = p.delete(&format!("{BY_HASH}{}", rec.hash)).await {
            // Not revoked after all: say so, and let it work here as it does elsewhere.
            self.key_cache.borrow_mut().unrevoke(&rec.hash);
            return Err(GatewayError::key_store(e));
        }
        p.delete(&format!("{BY_ID}{}", rec.id))
            .await
            .map_err(GatewayError::key_store)?;
        let body = serde_json::to_vec(&serde_json::json!({
            "id": rec.id, "object": "gateway_key", "deleted": true
        }))
        .expect("serializes");
        Ok((200, body))
    }
}

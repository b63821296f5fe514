//! The key-value trait over Workers KV.

use super::{Edge, KV_BINDING};
use crate::error::GatewayError;
use crate::platform::Kv;

fn kv_error(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::internal(format!("KV: {e}"))
}

impl Edge {
    fn kv(&self) -> Result<worker::KvStore, GatewayError> {
        self.env.kv(KV_BINDING).map_err(|_| {
            GatewayError::not_configured(format!(
                "The KV namespace `{KV_BINDING}` is not bound: add it to wrangler.toml \
                 (see README, Deploy)."
            ))
        })
    }
}

impl Kv for Edge {
    async fn get(&self, key: &str) -> Result<Option<String>, GatewayError> {
        self.kv()?.get(key).text().await.map_err(kv_error)
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        metadata: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<(), GatewayError> {
        let mut put = self.kv()?.put(key, value).map_err(kv_error)?;
        if let Some(ttl) = ttl_secs {
            put = put.expiration_ttl(ttl);
        }
        if let Some(meta) = metadata {
            let meta: serde_json::Value = serde_json::from_str(meta).map_err(kv_error)?;
            put = put.metadata(meta).map_err(kv_error)?;
        }
        put.execute().await.map_err(kv_error)
    }

    async fn delete(&self, key: &str) -> Result<(), GatewayError> {
        self.kv()?.delete(key).await.map_err(kv_error)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, GatewayError> {
        let kv = self.kv()?;
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut req = kv.list().prefix(prefix.to_owned());
            if let Some(c) = cursor.take() {
                req = req.cursor(c);
            }
            let page = req.execute().await.map_err(kv_error)?;
            out.extend(
                page.keys
                    .into_iter()
                    .map(|k| (k.name, k.metadata.map(|m| m.to_string()))),
            );
            match page.cursor {
                Some(c) if !page.list_complete && !c.is_empty() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
    }
}

//! A short-lived cache of product list pages. The catalogue is the hottest read and changes
//! rarely; a page may show stock up to `ttl` old (single products are always read fresh).
//! Writes made through this process clear it at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

#[derive(Debug)]
pub struct CatalogueCache {
    ttl: Duration,
    pages: Mutex<HashMap<(i64, i64), (Instant, Bytes)>>,
}

impl CatalogueCache {
    /// A `ttl` of zero turns caching off.
    pub fn new(ttl: Duration) -> Self {
        CatalogueCache {
            ttl,
            pages: Mutex::default(),
        }
    }

    pub fn get(&self, limit: i64, offset: i64) -> Option<Bytes> {
        if self.ttl.is_zero() {
            return None;
        }
        let pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        pages
            .get(&(limit, offset))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, body)| body.clone())
    }

    pub fn put(&self, limit: i64, offset: i64, body: Bytes) {
        if self.ttl.is_zero() {
            return;
        }
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if pages.len() > 1024 {
            pages.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        pages.insert((limit, offset), (Instant::now(), body));
    }

    pub fn clear(&self) {
        self.pages.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_expire_and_clear() {
        let cache = CatalogueCache::new(Duration::from_secs(60));
        cache.put(50, 0, Bytes::from_static(b"[]"));
        assert_eq!(cache.get(50, 0).as_deref(), Some(&b"[]"[..]));
        assert!(cache.get(50, 50).is_none());
        cache.clear();
        assert!(cache.get(50, 0).is_none());
        let off = CatalogueCache::new(Duration::ZERO);
        off.put(50, 0, Bytes::from_static(b"[]"));
        assert!(off.get(50, 0).is_none());
    }
}

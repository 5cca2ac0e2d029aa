//! Settings: the runtime knobs the admin API writes (payment faults), one row per key.

use sqlx::Row;

use super::*;

impl Store {
    pub async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        untraced(async move {
            let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.map(|row| row.get(0)))
        })
        .await
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        untraced(async move {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key)
            .bind(value)
            .bind(self.now_ms())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_setting(&self, key: &str) -> StoreResult<()> {
        untraced(async move {
            sqlx::query("DELETE FROM settings WHERE key = $1")
                .bind(key)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }
}

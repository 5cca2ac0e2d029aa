//! Products: the catalogue, its seed, and new records.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::*;

impl Store {
    /// Seeds the catalogue into an empty products table; returns how many were inserted.
    pub async fn seed_if_empty(&self) -> StoreResult<u64> {
        untraced(async move {
            let count: i64 = sqlx::query("SELECT COUNT(*) FROM products")
                .fetch_one(&self.pool)
                .await?
                .get(0);
            if count > 0 {
                return Ok(0);
            }
            let mut tx = self.begin_write().await?;
            let mut inserted = 0;
            for (title, artist, genre, price, stock) in CATALOGUE {
                inserted += sqlx::query(
                    "INSERT INTO products (title, artist, genre, price_cents, stock, initial_stock, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (title, artist) DO NOTHING",
                )
                .bind(*title)
                .bind(*artist)
                .bind(*genre)
                .bind(*price)
                .bind(*stock)
                .bind(self.now_ms())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(inserted)
        })
        .await
    }

    pub async fn list_products(&self, limit: i64, offset: i64) -> StoreResult<Vec<Product>> {
        self.traced("SELECT", "products", async move {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT $1 OFFSET $2");
            let rows = sqlx::query(&sql).bind(limit).bind(offset).fetch_all(&self.pool).await?;
            Ok(rows.iter().map(product_from_row).collect())
        })
        .await
    }

    pub async fn get_product(&self, id: i64) -> StoreResult<Option<Product>> {
        self.traced("SELECT", "products", async move {
            let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            Ok(row.as_ref().map(product_from_row))
        })
        .await
    }

    /// Inserts a product; `None` when one with the same title and artist exists.
    pub async fn create_product(&self, new: &NewProduct) -> StoreResult<Option<Product>> {
        self.traced("INSERT", "products", async move {
            let sql = format!(
                "INSERT INTO products (title, artist, genre, price_cents, stock, initial_stock, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (title, artist) DO NOTHING \
                 RETURNING {PRODUCT_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&new.title)
                .bind(&new.artist)
                .bind(&new.genre)
                .bind(new.price_cents)
                .bind(new.stock)
                .bind(self.now_ms())
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(product_from_row))
        })
        .await
    }
}

fn product_from_row(row: &AnyRow) -> Product {
    Product {
        id: row.get(0),
        title: row.get(1),
        artist: row.get(2),
        genre: row.get(3),
        price_cents: row.get(4),
        stock: row.get(5),
    }
}

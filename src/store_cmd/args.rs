//! `recordctl store`'s flags.

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: std::net::SocketAddr,
    /// Database URL (sqlite://… or postgres://…); default a fresh SQLite file in a temp dir.
    #[arg(long)]
    pub database: Option<String>,
}

//! `goose-bare --host URL --users N --run-time 10s --hatch-rate N --report-file x.json`: goose
//! itself with one transaction, a GET of `/`, for bench/load-compare.sh. Goose's own flags.

use goose::prelude::*;

async fn get_root(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    GooseAttack::initialize()?
        .register_scenario(scenario!("bare").register_transaction(transaction!(get_root)))
        .execute()
        .await?;
    Ok(())
}

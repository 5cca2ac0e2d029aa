//! The closed model on goose, driven as a library: goose starts the users at the hatch
//! rate and runs them for the duration or their iterations; each user iteration runs one
//! scenario transaction (drawn by weight) through our executor, which does the measuring.
//! Goose's own printing, controllers and metrics are off.

use std::sync::Arc;
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::*;

use crate::traffic::executor::{Executor, Pace};
use crate::traffic::stats::Recorder;

pub struct ClosedModel {
    pub users: usize,
    pub ramp_up: Duration,
    pub iterations: Option<usize>,
    pub duration: Duration,
}

pub async fn run(
    base: &str,
    model: ClosedModel,
    executor: Arc<Executor>,
    recorder: Arc<Recorder>,
) -> Result<(), super::EngineError> {
    let mut config = GooseConfiguration::default();
    config.host = Some(base.to_string());
    config.users = Some(model.users);
    // No ramp-up: every user at once (goose launches them at this rate; `users` per second
    // would spend the first second of the run ramping).
    let hatch_per_second = if model.ramp_up.is_zero() {
        model.users as f64 * 1000.0
    } else {
        model.users as f64 / model.ramp_up.as_secs_f64()
    };
    config.increase_rate = Some(format!("{:.3}", hatch_per_second.max(0.001)));
    if model.iterations.is_none() {
        // Goose's run time starts once every user is launched; ours counts the ramp-up.
        let steady = model.duration.saturating_sub(model.ramp_up).as_secs().max(1);
        config.run_time = Some(steady.to_string());
    }
    config.iterations = model.iterations;
    config.quiet = 1;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_telnet = true;
    // With metrics reset on, goose prints nothing when all users are launched.
    config.no_reset_metrics = false;
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.no_status_codes = true;

    let name = executor.scenario().name.clone();
    let body: TransactionFunction = Arc::new(move |user: &mut GooseUser| {
        let executor = executor.clone();
        let recorder = recorder.clone();
        let lane = user.weighted_users_index % executor.lanes();
        Box::pin(async move {
            let index = executor.pick_transaction();
            executor
                .run_transaction(
                    index,
                    Pace {
                        intended: None,
                        think: true,
                        lane,
                    },
                    &recorder,
                )
                .await;
            executor.think(None).await;
            Ok(())
        })
    });
    let scenario = Scenario::new(&name).register_transaction(Transaction::new(body).set_name(&name));
    GooseAttack::initialize_with_config(config)
        .map_err(|e| super::EngineError::Closed(format!("cannot set up goose: {e}")))?
        .register_scenario(scenario)
        .execute()
        .await
        .map_err(|e| super::EngineError::Closed(format!("goose run failed: {e:?}")))?;
    Ok(())
}

//! Forecasting a workload's hourly energy: MSTL (daily and weekly seasonality) with an AutoETS trend,
//! against seasonal naive (the same hour last week) as the baseline, chosen per series by a
//! rolling-origin backtest, with prediction intervals.
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Predict};

pub const DAY_H: usize = 24;
pub const WEEK_H: usize = 168;
/// The backtest: this many origins a day apart, each forecasting a week (so its errors, and the
/// intervals drawn from them, are those of forecasting days ahead, not just the next hour).
/// Each origin is a refit: four keep a forecast of 100 workloads to seconds.
pub const BACKTEST_ORIGINS: usize = 4;
pub const BACKTEST_HORIZON_H: usize = WEEK_H;
/// Two weekly seasons to fit at the earliest origin, plus the origins and the week they forecast.
pub const MIN_HISTORY_H: usize = 2 * WEEK_H + (BACKTEST_ORIGINS - 1) * DAY_H + BACKTEST_HORIZON_H;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Mstl,
    SeasonalNaive,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Mstl => "MSTL(24 h, 168 h) with AutoETS trend",
            Model::SeasonalNaive => "seasonal naive (same hour last week)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{needed_h} hours of history are needed, {have_h} are there")]
    TooShort { have_h: usize, needed_h: usize },
    #[error("the model could not be fitted: {0}")]
    Model(String),
}

/// Hourly predictions with their interval at `level`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub level: f64,
}

fn mstl(history: &[f64], horizon: usize, level: f64) -> Result<Prediction, ForecastError> {
    let model = MSTLModel::new(
        vec![DAY_H, WEEK_H],
        AutoETS::non_seasonal().into_trend_model(),
    );
    let fitted = model
        .fit(history)
        .map_err(|e| ForecastError::Model(e.to_string()))?;
    let forecast = fitted
        .predict(horizon, level)
        .map_err(|e| ForecastError::Model(e.to_string()))?;
    let (lower, upper) = match forecast.intervals {
        Some(intervals) => (intervals.lower, intervals.upper),
        None => (forecast.point.clone(), forecast.point.clone()),
    };
    Ok(Prediction {
        point: forecast.point,
        lower,
        upper,
        level,
    })
}

/// The same hour of the last week repeated; its interval comes from the backtest alone.
fn seasonal_naive(history: &[f64], horizon: usize, level: f64) -> Prediction {
    let last_week = &history[history.len() - WEEK_H..];
    let point: Vec<f64> = (0..horizon).map(|h| last_week[h % WEEK_H]).collect();
    Prediction {
        lower: point.clone(),
        upper: point.clone(),
        point,
        level,
    }
}

fn predict(
    model: Model,
    history: &[f64],
    horizon: usize,
    level: f64,
) -> Result<Prediction, ForecastError> {
    match model {
        Model::Mstl => mstl(history, horizon, level),
        Model::SeasonalNaive => Ok(seasonal_naive(history, horizon, level)),
    }
}

/// The errors (actual - predicted) of a model over the rolling-origin backtest: at each origin,
/// fit on everything before it and forecast the week after.
fn backtest(model: Model, history: &[f64]) -> Result<Vec<f64>, ForecastError> {
    let n = history.len();
    if n < MIN_HISTORY_H {
        return Err(ForecastError::TooShort {
            have_h: n,
            needed_h: MIN_HISTORY_H,
        });
    }
    let mut errors = Vec::with_capacity(BACKTEST_ORIGINS * BACKTEST_HORIZON_H);
    for origin in 0..BACKTEST_ORIGINS {
        let cut = n - BACKTEST_HORIZON_H - (BACKTEST_ORIGINS - 1 - origin) * DAY_H;
        let predicted = predict(model, &history[..cut], BACKTEST_HORIZON_H, 0.8)?;
        errors.extend(
            predicted
                .point
                .iter()
                .zip(&history[cut..cut + BACKTEST_HORIZON_H])
                .map(|(p, y)| y - p.max(0.0)),
        );
    }
    Ok(errors)
}

fn mean_absolute(errors: &[f64]) -> f64 {
    errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64
}

/// Split-conformal half-width: the backtest's absolute errors at the level's order statistic,
/// so an interval covers about `level` of what the same model got wrong out of sample. (MSTL's
/// own intervals rest on the remainder after decomposition, which understates the noise.)
fn conformal_half_width(errors: &[f64], level: f64) -> f64 {
    let mut absolute: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    if absolute.is_empty() {
        return 0.0;
    }
    absolute.sort_by(f64::total_cmp);
    let rank = ((absolute.len() + 1) as f64 * level).ceil() as usize;
    absolute[rank.clamp(1, absolute.len()) - 1]
}

/// Mean absolute error of a model over the rolling-origin backtest.
pub fn backtest_mae(model: Model, history: &[f64]) -> Result<f64, ForecastError> {
    backtest(model, history).map(|errors| mean_absolute(&errors))
}

/// A series' forecast: the model that won its backtest, both models' errors, the prediction.
#[derive(Debug, Clone)]
pub struct SeriesForecast {
    pub model: Model,
    pub mae: f64,
    pub baseline_mae: f64,
    /// Energy cannot be negative: points and bounds are floored at zero. The interval is the
    /// wider of the model's own and the split-conformal one from the backtest.
    pub prediction: Prediction,
}

/// Forecasts `horizon` hours after `history` (hourly, oldest first, zero where nothing ran).
pub fn forecast_series(
    history: &[f64],
    horizon: usize,
    level: f64,
) -> Result<SeriesForecast, ForecastError> {
    let baseline_errors = backtest(Model::SeasonalNaive, history)?;
    let baseline_mae = mean_absolute(&baseline_errors);
    // A series MSTL cannot fit (constant zero, say) keeps the baseline.
    let mstl_errors = backtest(Model::Mstl, history).ok();
    let (model, errors) = match mstl_errors {
        Some(errors) if mean_absolute(&errors) < baseline_mae => (Model::Mstl, errors),
        _ => (Model::SeasonalNaive, baseline_errors),
    };
    let mut prediction = predict(model, history, horizon, level)?;
    let half = conformal_half_width(&errors, level);
    for h in 0..horizon {
        let point = prediction.point[h];
        prediction.lower[h] = prediction.lower[h].min(point - half).max(0.0);
        prediction.upper[h] = prediction.upper[h].max(point + half).max(0.0);
        prediction.point[h] = point.max(0.0);
    }
    Ok(SeriesForecast {
        model,
        mae: mean_absolute(&errors),
        baseline_mae,
        prediction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// kWh per hour with a daily shape (busy days), a weekly one (quiet weekends), a slow upward
    /// trend and Gaussian noise of 0.3 kWh.
    fn synthetic(hours: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..hours)
            .map(|t| {
                let hour = (t % DAY_H) as f64;
                let weekday = (t / DAY_H) % 7;
                let daily = 2.0 * (std::f64::consts::TAU * (hour - 8.0) / 24.0).sin();
                let weekly = if weekday >= 5 { -3.0 } else { 0.0 };
                let noise: f64 = (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
                10.0 + daily + weekly + 0.002 * t as f64 + 0.3 * noise
            })
            .collect()
    }

    #[test]
    fn mstl_beats_seasonal_naive_and_its_interval_covers_the_held_out_week() {
        // Eight weeks of each of four series: fit on seven, hold out the eighth.
        let mut inside = 0;
        for seed in 1..=4 {
            let series = synthetic(8 * WEEK_H, seed);
            let (train, held_out) = series.split_at(7 * WEEK_H);
            let mstl_mae = backtest_mae(Model::Mstl, train).unwrap();
            let naive_mae = backtest_mae(Model::SeasonalNaive, train).unwrap();
            // Seasonal naive carries last week's noise (sqrt(2) x 0.3 kWh) and misses a week of
            // trend (0.002 x 168 = 0.34 kWh); MSTL is left with about the noise itself.
            assert!(
                mstl_mae < 0.85 * naive_mae,
                "seed {seed}: MSTL {mstl_mae} vs naive {naive_mae}"
            );
            let forecast = forecast_series(train, WEEK_H, 0.8).unwrap();
            assert_eq!(forecast.model, Model::Mstl);
            let p = &forecast.prediction;
            inside += held_out
                .iter()
                .enumerate()
                .filter(|(h, y)| p.lower[*h] <= **y && **y <= p.upper[*h])
                .count();
        }
        // Seeds 1 to 4 cover 69%, 84%, 83% and 82% of their weeks.
        let coverage = inside as f64 / (4 * WEEK_H) as f64;
        assert!(
            (0.72..=0.88).contains(&coverage),
            "the 80% interval covered {coverage} of the held-out weeks"
        );
    }

    #[test]
    fn too_little_history_says_how_much_is_needed() {
        let error = forecast_series(&synthetic(2 * WEEK_H, 1), DAY_H, 0.8).unwrap_err();
        assert!(matches!(
            error,
            ForecastError::TooShort {
                have_h: 336,
                needed_h: 576
            }
        ));
    }
}

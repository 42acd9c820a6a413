//! `ITSM_MAX_RPS`: how fast queued deliveries may call the ITSM, shared by
//! the worker containers that may run at once (`WORKER_MAX_CONCURRENCY`).

use super::{ConfigError, Env, err};

/// The least rate one container may be given: its calls are never more
/// than 10 s apart (a claim's lease must outlive the wait).
const LEAST_PER_CONTAINER: f64 = 0.1;

/// The most a paced call waits for its slot at `per_second` (the pacer's
/// spacing, which it never lets grow past 10 s).
pub fn spacing(per_second: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(
        (1.0 / per_second).min(crate::adapters::pacing::MOST_SPACING_SECS),
    )
}

/// Calls a second one worker container (or the local drain) may make;
/// `None`: unpaced.
pub fn per_container(env: &Env) -> Result<Option<f64>, ConfigError> {
    let Some(text) = env.get("ITSM_MAX_RPS") else {
        return Ok(None);
    };
    let rps: f64 = text
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && (0.1..=1000.0).contains(r))
        .ok_or_else(|| {
            err(
                "ITSM_MAX_RPS",
                format!(
                    "{text:?} must be a number from 0.1 to 1000: requests a second to the ITSM"
                ),
            )
        })?;
    let containers = env.number("WORKER_MAX_CONCURRENCY", 1)?;
    let share = rps / containers as f64;
    if share < LEAST_PER_CONTAINER {
        return Err(err(
            "ITSM_MAX_RPS",
            format!(
                "{rps} shared by WORKER_MAX_CONCURRENCY ({containers}) containers is {share:.3} a \
                 second each, below {LEAST_PER_CONTAINER}: raise it or run fewer workers"
            ),
        ));
    }
    Ok(Some(share))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(vars: &[(&str, &str)]) -> Result<Option<f64>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        per_container(&Env::new(&lookup))
    }

    #[test]
    fn the_rate_is_shared_by_the_containers_and_checked() {
        assert_eq!(rate(&[]).unwrap(), None);
        assert_eq!(rate(&[("ITSM_MAX_RPS", "20")]).unwrap(), Some(20.0));
        let shared = rate(&[("ITSM_MAX_RPS", "2.5"), ("WORKER_MAX_CONCURRENCY", "5")]);
        assert_eq!(shared.unwrap(), Some(0.5));
        for (vars, var) in [
            (vec![("ITSM_MAX_RPS", "0")], "ITSM_MAX_RPS"),
            (vec![("ITSM_MAX_RPS", "NaN")], "ITSM_MAX_RPS"),
            (vec![("ITSM_MAX_RPS", "fast")], "ITSM_MAX_RPS"),
            (
                vec![("ITSM_MAX_RPS", "1"), ("WORKER_MAX_CONCURRENCY", "20")],
                "ITSM_MAX_RPS",
            ),
            (
                vec![("ITSM_MAX_RPS", "1"), ("WORKER_MAX_CONCURRENCY", "0")],
                "WORKER_MAX_CONCURRENCY",
            ),
        ] {
            assert_eq!(rate(&vars).unwrap_err().var, var, "{vars:?}");
        }
    }
}

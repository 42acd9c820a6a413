//! The clock port's real adapter: the system time.

use std::sync::Arc;

use crate::domain::ports::Clock;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    })
}

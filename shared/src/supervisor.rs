//! Runs a service's long-lived parts side by side until shutdown or until one
//! of them stops: the first to stop (or fail, or panic) stops the others, and
//! the log says which one it was. Both tiers use it: `build()` adds the parts
//! (nothing runs yet), `run_until_stopped()` starts and supervises them.

use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Whether a part may finish before the service stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Runs until stopped; ending earlier stops the service.
    UntilStopped,
    /// Finishes its job and ends (a catch-up replay); only a failure stops the service.
    MayFinish,
}

type Joined = (&'static str, Ending, anyhow::Result<()>);
type Part = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A set of named parts sharing one stop signal.
pub struct Supervisor {
    stop: CancellationToken,
    pending: Vec<(&'static str, Ending, Part)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            pending: Vec::new(),
        }
    }

    /// The signal every part watches; cancelled when the service stops.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds a part that runs until the stop signal (started by [`Self::run`]).
    pub fn add<F>(&mut self, name: &'static str, part: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.push(name, Ending::UntilStopped, part);
    }

    /// Adds a part that may finish on its own without stopping the service.
    pub fn add_finite<F>(&mut self, name: &'static str, part: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.push(name, Ending::MayFinish, part);
    }

    fn push<F>(&mut self, name: &'static str, ending: Ending, part: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.pending.push((name, ending, Box::pin(part)));
    }

    /// Starts every part, waits for `shutdown` or for a part to stop, then
    /// stops every part and waits for them all. Returns the first failure,
    /// named after its part.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut parts = JoinSet::new();
        for (name, ending, part) in self.pending {
            parts.spawn(async move { (name, ending, part.await) });
        }
        let stop = self.stop;
        tokio::pin!(shutdown);
        let mut result = Ok(());
        loop {
            tokio::select! {
                () = &mut shutdown, if !stop.is_cancelled() => {
                    tracing::info!("stopping");
                    stop.cancel();
                }
                joined = parts.join_next() => {
                    let Some(joined) = joined else { break };
                    if let Err(e) = settle(&stop, joined) {
                        if result.is_ok() {
                            result = Err(e);
                        }
                    }
                }
            }
        }
        result
    }
}

/// Decides what one part's end means; stops the rest unless it was a finite
/// part that finished well.
fn settle(
    stop: &CancellationToken,
    joined: Result<Joined, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    let outcome = match joined {
        Ok((_, Ending::MayFinish, Ok(()))) => return Ok(()),
        Ok((name, _, Ok(()))) => {
            if !stop.is_cancelled() {
                tracing::warn!(part = name, "part exited; stopping the service");
            }
            Ok(())
        }
        Ok((name, _, Err(e))) => {
            tracing::error!(part = name, error = %format!("{e:#}"), "part failed; stopping the service");
            Err(e.context(name))
        }
        Err(e) => {
            tracing::error!(error = %e, "part panicked; stopping the service");
            Err(anyhow::anyhow!("a part panicked: {e}"))
        }
    };
    stop.cancel();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn forever(stop: CancellationToken) -> anyhow::Result<()> {
        stop.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_stops_every_part() {
        let mut s = Supervisor::new();
        s.add("a", forever(s.stop_token()));
        s.add("b", forever(s.stop_token()));
        s.run(async {}).await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_part_stops_the_others_and_is_named() {
        let mut s = Supervisor::new();
        s.add("steady", forever(s.stop_token()));
        s.add("flaky", async { anyhow::bail!("boom") });
        let err = s.run(std::future::pending()).await.unwrap_err();
        assert!(format!("{err:#}").starts_with("flaky: boom"), "{err:#}");
    }

    // Paused time: the sleep ends only once every other task is idle, so the
    // finished part has surely been seen by then.
    #[tokio::test(start_paused = true)]
    async fn a_finite_part_may_finish_but_an_endless_one_may_not() {
        let mut s = Supervisor::new();
        let stop = s.stop_token();
        s.add("steady", forever(s.stop_token()));
        s.add_finite("replay", async { Ok(()) });
        let run = tokio::spawn(s.run(std::future::pending()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !stop.is_cancelled(),
            "a finished finite part stopped the service"
        );
        assert!(!run.is_finished());
        stop.cancel();
        run.await.unwrap().unwrap();

        let mut s = Supervisor::new();
        let stop = s.stop_token();
        s.add("steady", forever(s.stop_token()));
        s.add("quitter", async { Ok(()) });
        s.run(std::future::pending()).await.unwrap();
        assert!(stop.is_cancelled());
    }

    #[tokio::test]
    async fn a_panicking_part_is_an_error() {
        let mut s = Supervisor::new();
        s.add("steady", forever(s.stop_token()));
        s.add("panics", async { panic!("bug") });
        assert!(s.run(std::future::pending()).await.is_err());
    }
}

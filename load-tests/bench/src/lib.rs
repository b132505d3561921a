//! Cellbank's benchmark tools: the seed file the load tests share (written
//! by `load-tests/seed.py` through global's public API) and the event
//! envelopes exactly as global builds them, so that the raw-broker baseline
//! produces the same stream the router does.

pub mod seed;
pub mod stream;

//! Cellbank global router tier.

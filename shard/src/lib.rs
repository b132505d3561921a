//! One Cellbank cell.

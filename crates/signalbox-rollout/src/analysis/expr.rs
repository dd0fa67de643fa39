//! See the contract in `analysis/mod.rs`. (Being written.)

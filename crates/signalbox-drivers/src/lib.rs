//! Deploy drivers and metric providers. (Being written.)

//! Strategies compiled to step plans and the rollout state machine. (Being written.)

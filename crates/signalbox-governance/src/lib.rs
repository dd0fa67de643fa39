//! Governance (SPEC C4, C5): gate policies set at organization, domain and service level and
//! only ever tightened downwards; gate evaluation over the release evidence document with
//! built-in rules and Rego; approval rules with segregation of duties; risk scoring; and
//! break-glass. Pure: the application gathers the inputs and stores the outcomes.

pub mod approvals;
pub mod breakglass;
pub mod gates;
pub mod policy;
pub mod rego;
pub mod risk;

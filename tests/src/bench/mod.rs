//! What the two benchmark runners (`ha-bench`, `ha-bench-lab`) share: the summary
//! of repeated samples ([`stats::Dist`]), the description of the machine the figures
//! were measured on ([`machine::Machine`]) and the writer of their results files
//! ([`report`]).

pub mod machine;
pub mod report;
pub mod stats;

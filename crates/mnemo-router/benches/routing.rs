//! Routing benchmarks (placeholder).
fn main() {}

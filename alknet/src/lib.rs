//! The `alknet` node: which services it serves ([`node`]). The binary (`src/main.rs`)
//! adds the command line.

pub mod node;

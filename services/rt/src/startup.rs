//! The startup block (format and parser: `keel_formats::startup`).
pub use keel_formats::startup::*;

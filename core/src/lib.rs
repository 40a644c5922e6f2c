//! vigil-core: the parts of vigil that know nothing of the CLI, the socket or the C ABI.
//!
//! Without the `std` feature this crate is `no_std` and allocates nothing: /proc and cgroup
//! parsers over `&[u8]`, CPU/memory deltas, the fixed-size [`sample::Sample`] and its ring, and
//! admission [`guard`] decisions. With `std` (the default) it adds the [`sampler`] that keeps
//! /proc files open and re-reads them with one `pread` each.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod find;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod histogram;
pub mod model;
pub mod parse;
#[cfg(feature = "std")]
pub mod phase;
pub mod procfs;
pub mod sample;

#[cfg(feature = "std")]
pub mod json;
#[cfg(feature = "std")]
pub mod protocol;
#[cfg(feature = "std")]
pub mod rpc;
#[cfg(feature = "std")]
pub mod runtime;
#[cfg(feature = "std")]
pub mod view;
pub mod wal;

#[cfg(feature = "std")]
pub mod exec;
#[cfg(feature = "std")]
pub mod sampler;

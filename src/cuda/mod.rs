//! The CUDA backend: kernels from `csrc/` embedded as one fatbin, launched through the driver API.

pub mod abi;

//! ferrum's virtual lab: everything needed to run ferrum for real without
//! hardware, on one machine.
//!
//! Owns: network namespaces and the links inside them ([`netns`]). Must
//! not: create any interface, address or route outside a namespace it
//! created itself, or leave one behind (every resource is removed on drop).

pub mod netns;

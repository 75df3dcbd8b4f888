//! ferrum's virtual lab: everything needed to run ferrum for real without
//! hardware, on one machine: QEMU nodes on a bridge inside a network
//! namespace, each behind an emulated BMC, and `ferrumd` serving them.
//!
//! Owns: network namespaces and the links inside them ([`netns`]); the
//! lab's plan and files ([`layout`]); the supervisor process that starts,
//! watches and stops every piece ([`supervisor`]); the one QMP client of
//! each node ([`qmp`], [`vm`]); the control socket everything else asks
//! about a node's power ([`control`]); the emulated BMCs' files and the
//! IPMI hook ([`bmc`]); the reference descriptions of lab nodes
//! ([`reference`]); stopping a lab whose supervisor is gone ([`teardown`]).
//!
//! Must not: create any interface, address or route outside a namespace it
//! created itself (the one exception: the root end of the lab's veth, a
//! point-to-point link into that namespace), write outside the lab
//! directory (the one exception: the namespace's hosts file
//! `/etc/netns/<namespace>/hosts`, removed with the namespace), kill a
//! process it did not
//! start (every kill is by a recorded PID whose command line names the lab
//! directory), or log a BMC password or an API token.
//!
//! Architecture invariant: only the supervisor talks QMP to a node's QEMU;
//! the BMC emulators and tests ask the supervisor through [`control`].

pub mod accel;
pub mod bmc;
pub mod control;
pub mod error;
pub mod ferrumd;
pub mod layout;
pub mod netns;
pub mod postgres;
pub mod procs;
pub mod qmp;
pub mod reference;
pub mod supervisor;
pub mod teardown;
pub mod vm;

pub use error::LabError;

//! ferrum's node agent: ferrum's hands on a node.
//!
//! It runs in the deploy ramdisk (and optionally inside deployed systems for
//! inventory only). It *executes* what the controller asks and never decides
//! anything by itself:
//! - [`inventory`]: what hardware is really there, read from `/proc` and `/sys`;
//! - [`image`]: stream an image (raw or zstd) to a block device, hashing as it writes;
//! - [`keys`]: install the lease holder's SSH keys and the hostname in the written system;
//! - [`wipe`]: erase partition tables and filesystem signatures (or everything).

pub mod image;
pub mod inventory;
pub mod keys;
pub mod run;
pub mod wipe;

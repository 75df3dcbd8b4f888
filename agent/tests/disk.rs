//! Disk operations against real block devices: image writing (files, loop
//! devices, HTTP with faults), key injection into a written ext4 system, and
//! wipes checked with wipefs, blkid and sfdisk. Needs root and loop devices.

#[path = "disk/fixture.rs"]
mod fixture;

#[path = "disk/cli.rs"]
mod cli;
#[path = "disk/image.rs"]
mod image;
#[path = "disk/keys.rs"]
mod keys;
#[path = "disk/wipe.rs"]
mod wipe;

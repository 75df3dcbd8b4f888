//! Integration tests of the controller: a real `ferrumd` (in-process, the
//! same `server::serve` the binary runs) on port 0 with a fresh SQLite file
//! and a manual clock, driven over HTTP. One binary, one module per
//! resource.

mod it;

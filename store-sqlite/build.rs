//! Rebuilds the store when a migration is added or changed: the migrations
//! are embedded at compile time by `sqlx::migrate!`.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

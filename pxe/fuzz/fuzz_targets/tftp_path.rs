//! Any requested TFTP path: the rooted handler either refuses it or
//! resolves it to a regular file inside the root, never outside.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use ferrum_pxe::tftp::RootedHandler;
use libfuzzer_sys::fuzz_target;

struct Tree {
    _dir: std::path::PathBuf,
    handler: RootedHandler,
}

static TREE: LazyLock<Tree> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("ferrum-tftp-fuzz-{}", std::process::id()));
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("undionly.kpxe"), b"x").unwrap();
    std::fs::write(root.join("sub/ipxe.efi"), b"x").unwrap();
    std::fs::write(dir.join("secret"), b"s").unwrap();
    let _ = std::os::unix::fs::symlink(dir.join("secret"), root.join("escape"));
    let _ = std::os::unix::fs::symlink("../undionly.kpxe", root.join("sub/up"));
    Tree { handler: RootedHandler::new(&root).unwrap(), _dir: dir }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.contains('\0') {
        return;
    }
    if let Ok(rel) = TREE.handler.resolve(Path::new(text)) {
        let full = TREE.handler.root().join(&rel);
        let canonical = std::fs::canonicalize(&full).unwrap();
        assert!(canonical.starts_with(TREE.handler.root()), "{text:?} resolved outside: {}", canonical.display());
        assert!(canonical.is_file());
    }
});

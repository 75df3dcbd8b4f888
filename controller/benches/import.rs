//! Import benchmark: a synthetic full-size Grid'5000 reference (940 nodes
//! cloned from the fixtures over 12 sites) read and flattened, then
//! imported through the application layer into a fresh SQLite database,
//! then imported again (every node unchanged). Prints min/median of 5 runs.
//!
//! `cargo bench -p ferrum-controller --bench import`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::app::nodes::ReferenceUpload;
use ferrum_controller::app::{Actor, App};
use ferrum_controller::clock::Clock;
use ferrum_controller::config::Config;
use ferrum_controller::db::sqlite::SqliteStore;
use ferrum_controller::model::{ProjectId, UserId};
use ferrum_controller::reference;

const NODES: usize = 940;
const RUNS: usize = 5;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (v[0].as_secs_f64() * 1e3, v[v.len() / 2].as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let tree = tempfile::tempdir()?;
    reference::synthesize_tree(&reference::fixtures_dir(), tree.path(), NODES)?;
    let admin = Actor { user_id: UserId(1), name: "admin".into(), is_admin: true, projects: Vec::<(ProjectId, String)>::new() };

    let (mut read, mut first, mut again) = (vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let t = Instant::now();
        let nodes = reference::read_tree(tree.path())?;
        read.push(t.elapsed());
        assert_eq!(nodes.len(), NODES);
        let uploads: Vec<ReferenceUpload> =
            nodes.into_iter().map(|d| ReferenceUpload { site: d.site, cluster: d.cluster, description: d.reference }).collect();

        let db = tempfile::tempdir()?;
        let (f, a) = rt.block_on(async {
            let url = format!("sqlite://{}", db.path().join("bench.db").display());
            let store = Arc::new(SqliteStore::open(&url, ferrum_controller::db::SecretKey::generate()?).await?);
            let app = App::new(
                store,
                Clock::System,
                Config::default(),
                Arc::new(SimConductor),
                Arc::new(ferrum_controller::app::power::SimBmcs::default()),
            );
            let t = Instant::now();
            let o = app.import_nodes(&admin, uploads.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let f = t.elapsed();
            assert_eq!(o.added.len(), NODES);
            let t = Instant::now();
            let o = app.import_nodes(&admin, uploads).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let a = t.elapsed();
            assert_eq!(o.unchanged.len(), NODES);
            anyhow::Ok((f, a))
        })?;
        first.push(f);
        again.push(a);
    }
    println!("import of a synthetic Grid'5000 reference ({NODES} nodes), {RUNS} runs");
    println!("{:<44} {:>10} {:>10}", "step", "min ms", "median ms");
    for (name, v) in
        [("read + flatten the tree (files)", read), ("import into empty SQLite (all added)", first), ("re-import (all unchanged)", again)]
    {
        let (min, med) = stats(v);
        println!("{name:<44} {min:>10.1} {med:>10.1}");
    }
    Ok(())
}

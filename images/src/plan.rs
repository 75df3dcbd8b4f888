//! `ferrum-images build`: which steps a set of targets needs, in which
//! order, where their outputs go, and how long each took.
//!
//! Output layout under `out` (default `$HOME/.cache/ferrum/images`):
//! `kernel-cloud/`, `kernel-generic/` (unpacked kernels), `ramdisk-lab/`,
//! `ramdisk-hw/` (`vmlinuz`, `initrd.img`), `environments/` (`<name>.yaml`,
//! `<name>.raw.zst`, `<name>.raw.zst.sha256`), each with its `.stamp`.
//! The recipes live in their modules; this one only sequences them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::kernel::{Flavour, Kernel};
use crate::ramdisk::{Kind, Ramdisk};
use crate::{Freshness, agent, debian, kernel, ramdisk, tiny, tiny_python};

/// What can be asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The cloud kernel, unpacked (every other target builds it when needed).
    Kernel,
    /// The lab deploy ramdisk (cloud kernel, virtio).
    RamdiskLab,
    /// The hardware deploy ramdisk (generic kernel, server drivers).
    RamdiskHw,
    /// The `tiny` environment and `tiny-python` (tiny with python3 for
    /// Ansible): one target, so whatever builds `tiny` (CI, the lab tests,
    /// the demo) has both.
    Tiny,
    /// The `debian12-min` environment (needs deb.debian.org, minutes).
    Debian12Min,
}

impl Target {
    /// What `build` does without targets.
    pub const DEFAULT: &[Target] = &[Target::RamdiskLab, Target::Tiny];
    /// What `all` means.
    pub const ALL: &[Target] = &[Target::Kernel, Target::RamdiskLab, Target::RamdiskHw, Target::Tiny, Target::Debian12Min];
}

/// Where things go.
#[derive(Debug, Clone)]
pub struct Options {
    /// Built artefacts.
    pub out: PathBuf,
    /// Downloaded `.debs`.
    pub cache: PathBuf,
    /// A ferrum-agent binary to use instead of building the workspace's.
    pub agent: Option<PathBuf>,
}

impl Options {
    /// `$HOME/.cache/ferrum/images` and `$HOME/.cache/ferrum/debs`: outside
    /// the repository, so CI and `cargo clean` keep them.
    pub fn with_default_dirs() -> Result<Options> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| Error::Host { what: "HOME".into(), reason: "not set: give --out and --cache".into() })?;
        let base = home.join(".cache/ferrum");
        Ok(Options { out: base.join("images"), cache: base.join("debs"), agent: None })
    }

    /// The environments directory.
    pub fn environments(&self) -> PathBuf {
        self.out.join("environments")
    }
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub step: &'static str,
    pub freshness: Freshness,
    pub duration: Duration,
    /// The step's main output files.
    pub outputs: Vec<PathBuf>,
}

/// Everything a build produced (the targets asked for and what they needed).
#[derive(Debug, Clone, Default)]
pub struct Built {
    pub kernel_cloud: Option<Kernel>,
    pub kernel_generic: Option<Kernel>,
    pub agent: Option<PathBuf>,
    pub ramdisk_lab: Option<Ramdisk>,
    pub ramdisk_hw: Option<Ramdisk>,
    pub tiny: Option<Environment>,
    pub tiny_python: Option<Environment>,
    pub debian12_min: Option<Environment>,
    pub steps: Vec<StepReport>,
}

/// Builds `targets` (and what they need), calling `on_step` after each step.
pub fn build(options: &Options, targets: &[Target], mut on_step: impl FnMut(&StepReport)) -> Result<Built> {
    let wants = |t: Target| targets.contains(&t);
    let mut built = Built::default();
    let mut step = |built: &mut Built, name: &'static str, freshness: Freshness, start: Instant, outputs: Vec<PathBuf>| {
        let report = StepReport { step: name, freshness, duration: start.elapsed(), outputs };
        on_step(&report);
        built.steps.push(report);
    };

    if wants(Target::Kernel) || wants(Target::RamdiskLab) || wants(Target::Tiny) {
        let t = Instant::now();
        tracing::info!(step = "kernel-cloud", "start");
        let (k, f) = kernel::fetch_flavour(Flavour::Cloud, &options.cache, &options.out.join(Flavour::Cloud.step_name()))?;
        step(&mut built, "kernel-cloud", f, t, vec![k.vmlinuz.clone(), k.modules.clone()]);
        built.kernel_cloud = Some(k);
    }
    if wants(Target::RamdiskHw) {
        let t = Instant::now();
        tracing::info!(step = "kernel-generic", "start");
        let (k, f) = kernel::fetch_flavour(Flavour::Generic, &options.cache, &options.out.join(Flavour::Generic.step_name()))?;
        step(&mut built, "kernel-generic", f, t, vec![k.vmlinuz.clone(), k.modules.clone()]);
        built.kernel_generic = Some(k);
    }
    if wants(Target::RamdiskLab) || wants(Target::RamdiskHw) {
        let t = Instant::now();
        tracing::info!(step = "agent", "start");
        let (path, freshness) = agent::resolve(options.agent.as_deref())?;
        step(&mut built, "agent", freshness, t, vec![path.clone()]);
        built.agent = Some(path);
    }
    let agent_path = built.agent.clone();
    for (kind, target, kernel) in
        [(Kind::Lab, Target::RamdiskLab, built.kernel_cloud.clone()), (Kind::Hw, Target::RamdiskHw, built.kernel_generic.clone())]
    {
        if !wants(target) {
            continue;
        }
        let (Some(kernel), Some(agent)) = (kernel, agent_path.as_deref()) else { continue };
        let t = Instant::now();
        tracing::info!(step = kind.step_name(), "start");
        let (r, f) = ramdisk::build(kind, &kernel, agent, &options.out.join(kind.step_name()))?;
        step(&mut built, kind.step_name(), f, t, vec![r.vmlinuz.clone(), r.initrd.clone()]);
        match kind {
            Kind::Lab => built.ramdisk_lab = Some(r),
            Kind::Hw => built.ramdisk_hw = Some(r),
        }
    }
    if wants(Target::Tiny)
        && let Some(kernel) = built.kernel_cloud.clone()
    {
        let t = Instant::now();
        tracing::info!(step = tiny::NAME, "start");
        let (e, f) = tiny::build(&kernel, &options.environments())?;
        step(&mut built, tiny::NAME, f, t, e.files().map(Path::to_owned).to_vec());
        built.tiny = Some(e);
        let t = Instant::now();
        tracing::info!(step = tiny_python::NAME, "start");
        let (e, f) = tiny_python::build(&kernel, &options.cache, &options.environments())?;
        step(&mut built, tiny_python::NAME, f, t, e.files().map(Path::to_owned).to_vec());
        built.tiny_python = Some(e);
    }
    if wants(Target::Debian12Min) {
        let t = Instant::now();
        tracing::info!(step = debian::NAME, "start");
        let (e, f) = debian::build(&options.cache, &options.environments())?;
        step(&mut built, debian::NAME, f, t, e.files().map(Path::to_owned).to_vec());
        built.debian12_min = Some(e);
    }
    Ok(built)
}

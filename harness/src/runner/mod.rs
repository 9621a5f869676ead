//! Runs trials: one case on one topology, in its own guest, judged by its
//! expectations, its kernel log and its snapshots. libtest-mimic supplies
//! the conventions (`--list`, filters, `--exact`, `--test-threads`,
//! `--ignored`); listing parses the suites and boots nothing.

pub mod bench;
pub(crate) mod case;
pub mod compare;
mod report;
pub mod results;
mod snapshot;
pub mod states;
pub mod warm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::image::{self, BuildOptions, Image, ImageFiles};
use crate::vm::{accel::AccelChoice, Accel};

pub use case::{run_case, CaseOutcome, Prelude};
pub use report::{Status, TrialResult};

/// Where things are and how guests run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The repository root (holds suites/ and images/).
    pub root: PathBuf,
    pub image: String,
    /// The image `nfit_test` trials run on (see
    /// [`crate::select::nfit_test_image`]); none: they are skipped.
    pub nfit_test_image: Option<String>,
    /// Snapshot variants read before the shared snapshots, in order.
    pub variants: Vec<String>,
    /// Put snapshots the shared ones do not match into the first variant.
    pub new_variant: bool,
    /// Keep each trial's snapshot bodies here instead of judging them
    /// (`ndharness compare`).
    pub collect: Option<PathBuf>,
    /// Boot every guest instead of starting it from a saved state.
    pub cold: bool,
    pub runs_dir: PathBuf,
    /// Where `results.json` and `junit.xml` go.
    pub results_dir: PathBuf,
    pub build: BuildOptions,
    pub accel: AccelChoice,
    pub boot_timeout: Duration,
}

impl Config {
    /// The defaults for a repository: default image, the user's cache,
    /// accelerator `auto`, run folders under `ROOT/target/ndharness/runs`.
    pub fn for_repo(root: PathBuf) -> Config {
        Config {
            runs_dir: root.join("target/ndharness/runs"),
            results_dir: root.join("target/ndharness/results"),
            nfit_test_image: crate::select::nfit_test_image(
                &root.join("images"),
                &crate::select::Resolved {
                    image: "default".into(),
                    user_kernel: None,
                    user_ndctl: None,
                    variants: Vec::new(),
                },
            ),
            root,
            image: "default".into(),
            variants: Vec::new(),
            new_variant: false,
            collect: None,
            cold: false,
            build: BuildOptions {
                cache: image::cache_dir(),
                mirror: None,
                user_kernel: None,
                user_ndctl: None,
            },
            accel: AccelChoice::Auto,
            boot_timeout: Duration::from_secs(90),
        }
    }

    pub fn suites_dir(&self) -> PathBuf {
        self.root.join("suites")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
}

/// What every trial of a run shares: built once, on first use.
pub struct Shared {
    pub config: Config,
    env: OnceLock<Result<GuestEnv, String>>,
    /// The nfit_test image's, when it is another.
    nfit_test_env: OnceLock<Result<GuestEnv, String>>,
    pub results: Mutex<Vec<TrialResult>>,
    /// Print one line per trial as it ends.
    pub progress: std::sync::atomic::AtomicBool,
}

/// The image, QEMU and accelerator every guest of a run uses.
#[derive(Clone, Debug)]
pub struct GuestEnv {
    pub image: Image,
    pub qemu: PathBuf,
    pub accel: Accel,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            env: OnceLock::new(),
            nfit_test_env: OnceLock::new(),
            results: Mutex::new(Vec::new()),
            progress: Default::default(),
        })
    }

    /// Builds (or finds) the image and resolves QEMU and the accelerator.
    pub fn env(&self) -> Result<GuestEnv, String> {
        self.env
            .get_or_init(|| prepare(&self.config).map_err(|e| format!("{e:#}")))
            .clone()
    }

    /// The guest `trial` runs on: the run's, or for an nfit_test topology
    /// the image that builds nfit_test.
    pub fn env_for(&self, trial: &crate::suite::Trial) -> Result<GuestEnv, String> {
        if !trial.needs_test_image() {
            return self.env();
        }
        match &self.config.nfit_test_image {
            Some(name) if *name != self.config.image => self
                .nfit_test_env
                .get_or_init(|| prepare_image(&self.config, name).map_err(|e| format!("{e:#}")))
                .clone(),
            Some(_) => self.env(),
            None => Err(no_nfit_test(&self.config)),
        }
    }
}

/// Why an nfit_test trial cannot run with this configuration.
pub fn no_nfit_test(config: &Config) -> String {
    let needs = "needs the nfit_test modules and ndctl's tests";
    if config.build.user_kernel.is_some() || config.build.user_ndctl.is_some() {
        format!("{needs}, which are built for packaged kernels and ndctl only, not your own")
    } else {
        format!(
            "{needs}, which no image builds for image `{}`'s kernel and ndctl; run it with --image nfit-test",
            config.image
        )
    }
}

pub fn prepare(config: &Config) -> anyhow::Result<GuestEnv> {
    prepare_image(config, &config.image)
}

fn prepare_image(config: &Config, name: &str) -> anyhow::Result<GuestEnv> {
    let qemu = crate::vm::find_binary()?;
    let files = ImageFiles::load(&config.images_dir(), name)?;
    let image = image::build(&files, &config.build)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let accel = rt.block_on(crate::vm::accel::resolve(
        config.accel,
        &qemu,
        &image.kernel,
        &config.build.cache,
    ))?;
    Ok(GuestEnv { image, qemu, accel })
}

/// What one guest takes of the host's memory: its RAM (the NVDIMM and CXL
/// backing files are sparse files in the page cache) and QEMU itself.
pub fn guest_memory(t: &crate::topology::Topology) -> u64 {
    t.machine.memory.bytes() + (256 << 20)
}

/// Guests at once: one per core, fewer when the memory available now
/// would not hold that many guests of `guest_bytes` each.
pub fn default_jobs(guest_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    let by_memory = available.map_or(cores, |a| (a / guest_bytes.max(1)) as usize);
    cores.min(by_memory).max(1)
}

/// Discovers the suites and runs the selected trials; the exit code is 0 when
/// all passed, 1 on any conformance failure, 2 on infrastructure errors only.
pub fn run(shared: Arc<Shared>, args: &libtest_mimic::Arguments) -> ExitCode {
    ExitCode::from(execute(shared, args).code)
}

/// What a run gave: its exit code, every trial's result, and the guest.
pub struct Outcome {
    pub code: u8,
    pub results: Vec<TrialResult>,
    pub info: results::RunInfo,
}

/// [`run`], keeping the results for the caller.
pub fn execute(shared: Arc<Shared>, args: &libtest_mimic::Arguments) -> Outcome {
    let trials = match crate::suite::discover(&shared.config.suites_dir()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome {
                code: 2,
                results: Vec::new(),
                info: Default::default(),
            };
        }
    };
    snapshot::quiet_snapshot_panics();
    if !args.list {
        let keep = std::time::Duration::from_secs(states::KEEP_DAYS * 86400);
        let (n, freed) = states::prune(&shared.config.build.cache.join("states"), keep);
        if n > 0 {
            eprintln!(
                "removed {n} saved states unused for {} days ({:.1} GB)",
                states::KEEP_DAYS,
                freed as f64 / 1e9
            );
        }
    }
    let memory_of: std::collections::HashMap<String, u64> = trials
        .iter()
        .map(|t| (t.name.clone(), guest_memory(&t.topology.topology)))
        .collect();
    let t0 = std::time::Instant::now();
    // Each libtest trial beside the summary entry of an ignored case.
    let pairs: Vec<(libtest_mimic::Trial, Option<report::TrialResult>)> = trials
        .into_iter()
        .map(|trial| {
            let cannot = (trial.needs_test_image() && shared.config.nfit_test_image.is_none())
                .then(|| no_nfit_test(&shared.config));
            let skip = (trial.case.spec.ignored.is_some() || cannot.is_some())
                .then(|| report::ignored(&trial, cannot.clone()));
            let kind = trial.topology.name.clone();
            let shared = shared.clone();
            let name = trial.name.clone();
            let test = libtest_mimic::Trial::test(name, move || report::run_one(&shared, &trial))
                .with_kind(kind)
                .with_ignored_flag(skip.is_some());
            (test, skip)
        })
        .collect();
    // What libtest's own filter, --skip and --ignored select.
    let runs_ignored = args.ignored || args.include_ignored;
    let selected = || pairs.iter().filter(|(t, _)| !args.is_filtered_out(t));
    let skipped: Vec<report::TrialResult> = if runs_ignored {
        Vec::new()
    } else {
        selected().filter_map(|(_, s)| s.clone()).collect()
    };
    // Unless asked for libtest's own format, its lines (which carry no
    // time) go to a log file and each trial prints one line as it ends.
    let mut libtest_args = args.clone();
    if libtest_args.test_threads.is_none() && !args.list {
        // As many guests as the cores and the memory allow.
        let guest = selected()
            .filter_map(|(t, _)| memory_of.get(t.name()))
            .copied()
            .max()
            .unwrap_or(1 << 30);
        libtest_args.test_threads = Some(default_jobs(guest));
    }
    if !args.list && args.format.is_none() && !args.quiet && args.logfile.is_none() {
        let _ = std::fs::create_dir_all(&shared.config.runs_dir);
        let log = shared.config.runs_dir.join("libtest.log");
        libtest_args.logfile = Some(log.display().to_string());
        let runs = selected()
            .filter(|(t, _)| !t.has_ignored_flag() || runs_ignored)
            .count();
        let threads = libtest_args.test_threads.unwrap_or(1);
        println!("\nrunning {runs} trials, {threads} at a time");
        shared
            .progress
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let tests = pairs.into_iter().map(|(t, _)| t).collect();
    let conclusion = libtest_mimic::run(&libtest_args, tests);
    if args.list {
        return Outcome {
            code: 0,
            results: Vec::new(),
            info: Default::default(),
        };
    }
    let mut results = shared.results.lock().map(|r| r.clone()).unwrap_or_default();
    if shared.progress.load(std::sync::atomic::Ordering::Relaxed) {
        for r in &skipped {
            print!("{}", report::progress_line(r));
        }
        print!("{}", report::failures(&results));
    }
    results.extend(skipped);
    let wall = t0.elapsed();
    print!("{}", report::summary(&results, wall));
    let code = report::exit_code(&results, conclusion.has_failed());
    let info = match shared.env() {
        Ok(env) => results::RunInfo {
            image: env.image.manifest.image.clone(),
            image_key: env.image.manifest.key.clone(),
            kernel: env.image.manifest.kernel_release.clone(),
            kernel_source: env.image.manifest.kernel_source.clone(),
            ndctl_source: env.image.manifest.ndctl_source.clone(),
            accel: format!("{:?}", env.accel),
            start: if shared.config.cold { "cold" } else { "warm" }.into(),
        },
        Err(_) => results::RunInfo::default(),
    };
    let dir = &shared.config.results_dir;
    match results::write(dir, &results, &info, wall, code) {
        Ok((json, junit)) => println!("  results: {} {}", json.display(), junit.display()),
        Err(e) => eprintln!("warning: could not write results to {}: {e}", dir.display()),
    }
    Outcome {
        code,
        results,
        info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_follow_cores_and_memory() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // A guest bigger than any host's memory: one at a time, never zero.
        assert_eq!(default_jobs(u64::MAX), 1);
        // A tiny guest: the cores decide.
        assert_eq!(default_jobs(1 << 20), cores);
        let t = crate::topology::load("nfit-1").unwrap().topology;
        assert_eq!(guest_memory(&t), t.machine.memory.bytes() + (256 << 20));
    }
}

//! The `ndharness` command line.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ndharness::image::{self, BuildOptions, ImageFiles};
use ndharness::runner::{self, Config};
use ndharness::select::Resolved;
use ndharness::vm::accel::AccelChoice;

#[derive(Parser)]
#[command(
    name = "ndharness",
    version,
    about = "Boot QEMU guests with persistent-memory topologies, drive ndctl in them, snapshot what comes out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, lock or inspect guest images (images/NAME.yaml + NAME.lock).
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Boot one guest; run COMMAND in it and exit with its exit code, or stay
    /// up until Ctrl-C.
    Boot(BootArgs),
    /// Run suite cases as tests (libtest conventions).
    Run(RunArgs),
    /// Measure cold boot, warm start, round trip, image build and suite
    /// wall time (cold against warm), medians over --runs; also as JSON.
    Bench(BenchArgs),
    /// Find the commit of a kernel tree that broke a case: `git bisect run`
    /// with a kernel build and the case at each step.
    Bisect(BisectArgs),
    /// Run the same cases on two guests (kernels or ndctl versions) and
    /// report, per trial, whether transcript, layout and kernel log differ.
    Compare(CompareArgs),
    /// The saved guest states of warm starts in the cache: list them, or
    /// remove the unused ones (`run` removes those unused for 7 days).
    States {
        #[command(subcommand)]
        action: Option<StatesAction>,
    },
    /// Show a topology and its QEMU command line.
    Topology {
        #[command(subcommand)]
        action: TopologyAction,
    },
}

#[derive(Subcommand)]
enum ImageAction {
    /// Build the image (or find it in the cache) and print where it is.
    Build(ImageArgs),
    /// Resolve the recipe's packages and pin them in images/NAME.lock.
    Lock(ImageArgs),
    /// Print what a built image holds.
    Show(ImageArgs),
}

#[derive(Subcommand)]
enum StatesAction {
    /// Each state: last use, size, topology, folder (the default).
    List,
    /// Remove the states unused for DAYS days (0: all of them).
    Prune {
        #[arg(long, value_name = "DAYS", default_value_t = ndharness::runner::warm::states::KEEP_DAYS as f64)]
        older_than: f64,
    },
}

#[derive(Subcommand)]
enum TopologyAction {
    /// Print the topology (a shipped name or a YAML path) and its QEMU argv.
    Show { topology: String },
}

#[derive(Args, Clone)]
struct Common {
    /// The repository root holding suites/ and images/ [default: found from the current folder]
    #[arg(long, global = true, env = "NDHARNESS_ROOT")]
    root: Option<PathBuf>,
    /// Debian archive for guest packages [default: the host's apt sources]
    #[arg(long, global = true)]
    mirror: Option<String>,
}

/// Which guest: a packaged kernel and ndctl by name, or your own builds.
#[derive(Args, Clone, Default)]
struct SelectArgs {
    /// Kernel: debian-6.12 (default), debian-6.1, or the path of your own
    /// bzImage (with --modules).
    #[arg(long)]
    kernel: Option<String>,
    /// INSTALL_MOD_PATH of `make modules_install` for --kernel BZIMAGE.
    #[arg(long)]
    modules: Option<PathBuf>,
    /// ndctl: 81 or trixie (default), 76 or bookworm, or the DESTDIR of your
    /// own `meson install`.
    #[arg(long)]
    ndctl: Option<String>,
    /// A kernel source tree: built out of tree (defconfig + images/kernel-tree.config),
    /// incrementally, with ccache when installed; used as --kernel/--modules.
    #[arg(long)]
    kernel_tree: Option<PathBuf>,
}

impl SelectArgs {
    fn selection(&self, image: Option<String>) -> ndharness::select::Selection {
        ndharness::select::Selection {
            image,
            kernel: self.kernel.clone(),
            modules: self.modules.clone(),
            ndctl: self.ndctl.clone(),
            kernel_tree: self.kernel_tree.clone(),
            cold: false,
        }
    }
}

#[derive(Args)]
struct ImageArgs {
    /// Image recipe name (images/NAME.yaml) [default: the one --kernel and
    /// --ndctl select, `default` without them]
    name: Option<String>,
    #[command(flatten)]
    select: SelectArgs,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct GuestArgs {
    #[command(flatten)]
    common: Common,
    /// Image recipe name (images/NAME.yaml) [default: the one --kernel and
    /// --ndctl select]
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    select: SelectArgs,
    #[command(flatten)]
    machine: MachineArgs,
    /// Folder for run folders (evidence) [default: ROOT/target/ndharness/runs]
    #[arg(long)]
    runs_dir: Option<PathBuf>,
}

/// How guests run.
#[derive(Args, Clone)]
struct MachineArgs {
    /// Accelerator; auto proves KVM with a probe boot and falls back to TCG.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Seconds from QEMU start until the guest agent must answer.
    #[arg(long, default_value = "90")]
    boot_timeout: u64,
    /// Boot every guest, instead of starting it from the saved state of a
    /// ready guest (the default; see README, "Warm start").
    #[arg(long)]
    cold: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Repetitions of each start and image build.
    #[arg(long, default_value = "5")]
    runs: usize,
    /// Topologies to start (repeatable).
    #[arg(long = "topology", default_values = ["nfit-1", "nfit-2", "cxl-x4"])]
    topologies: Vec<String>,
    /// Trials whose suite wall time is measured cold, then warm ("" for all).
    #[arg(long)]
    suite: Option<String>,
    /// Leave out of the suite the trials whose name contains this
    /// (repeatable), e.g. `ndctl::` for ndctl's own test scripts.
    #[arg(long)]
    suite_skip: Vec<String>,
    /// Guests at once for the suite [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, visible_alias = "jobs")]
    test_threads: Option<usize>,
    /// Delete the saved VM states first, so the warm suite pays for making
    /// its templates, as a first run after any change does.
    #[arg(long)]
    fresh_states: bool,
    /// Where the JSON goes [default: ROOT/target/ndharness/bench.json]
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    guest: GuestArgs,
}

#[derive(Args)]
struct BisectArgs {
    /// The trials that tell good from bad (a filter, as for `run`).
    #[arg(long)]
    case: String,
    /// A revision where the case passes.
    #[arg(long)]
    good: String,
    /// A revision where it fails.
    #[arg(long)]
    bad: String,
    /// The kernel's git work tree; left on the revision it was on.
    #[arg(long)]
    kernel_tree: PathBuf,
    /// Match --case exactly.
    #[arg(long)]
    exact: bool,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    machine: MachineArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// The reference guest: a kernel name (debian-6.1), an image name, or
    /// key=value pairs: kernel=NAME|BZIMAGE, modules=DIR, tree=DIR, ndctl=NAME|DIR, image=NAME, start=cold|warm.
    #[arg(long)]
    baseline: String,
    /// The guest under test, in the same forms.
    #[arg(long)]
    candidate: String,
    /// Compare only trials whose name contains this (suite::case::topology).
    filter: Option<String>,
    /// Match FILTER exactly.
    #[arg(long)]
    exact: bool,
    /// Skip trials whose name contains this.
    #[arg(long)]
    skip: Vec<String>,
    /// Guests at once [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, visible_alias = "jobs")]
    test_threads: Option<usize>,
    /// Folder for compare.json, compare.html and each side's results
    /// [default: ROOT/target/ndharness/compare]
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    machine: MachineArgs,
}

#[derive(Args)]
struct BootArgs {
    /// A shipped topology name or the path of a topology YAML file.
    #[arg(long, short)]
    topology: String,
    #[command(flatten)]
    guest: GuestArgs,
    /// Seconds COMMAND may run.
    #[arg(long, default_value = "300")]
    timeout: u64,
    /// Save the ready guest's state (before the drivers of the topology's
    /// CXL and virtio-pmem devices load) to this file and stop.
    #[arg(long, hide = true)]
    save_state: Option<PathBuf>,
    /// Start from this state (saved with --save-state, same topology).
    #[arg(long, hide = true)]
    from_state: Option<PathBuf>,
    /// Command to run in the guest.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Run only trials whose name contains this (suite::case::topology).
    filter: Option<String>,
    /// List trials without running them.
    #[arg(long)]
    list: bool,
    /// Match FILTER exactly.
    #[arg(long)]
    exact: bool,
    /// Run only ignored cases.
    #[arg(long)]
    ignored: bool,
    /// Run ignored cases too.
    #[arg(long)]
    include_ignored: bool,
    /// Skip trials whose name contains this.
    #[arg(long)]
    skip: Vec<String>,
    /// Guests at once [default: one per core, fewer when the available memory would not hold them]
    #[arg(long, visible_alias = "jobs")]
    test_threads: Option<usize>,
    /// Folder for results.json and junit.xml [default: ROOT/target/ndharness/results]
    #[arg(long)]
    results: Option<PathBuf>,
    /// Exit as `git bisect run` reads it: 0 pass, 1 conformance failure,
    /// 125 (skip) when the kernel would not build or boot, 128 (stop) when
    /// no trial matches.
    #[arg(long, hide = true)]
    bisect: bool,
    /// A snapshot the shared one does not match goes to this image's first
    /// snapshot variant (snapshots/VARIANT/) for `cargo insta review`.
    #[arg(long)]
    new_variant: bool,
    #[command(flatten)]
    guest: GuestArgs,
}

fn main() -> ExitCode {
    // `ndharness ... | head` ends quietly, as other command-line tools do.
    // SAFETY: restoring the default action of a signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    install_ctrl_c();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| {
        ndharness::vm::kill_all();
        eprintln!("\ninterrupted: every guest this run started has been stopped");
        // exit() skips destructors; the guests are already dead, and their
        // run folders are kept as evidence.
        std::process::exit(130);
    });
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Image { action } => image_cmd(action),
        Command::Boot(args) => boot(args),
        Command::Run(args) => run(args),
        Command::Compare(args) => compare(args),
        Command::Bisect(args) => bisect(args),
        Command::Bench(args) => bench(args),
        Command::States { action } => states_cmd(action.unwrap_or(StatesAction::List)),
        Command::Topology {
            action: TopologyAction::Show { topology },
        } => {
            let t = ndharness::topology::load(&topology)?;
            // The expansion, in the topology format itself: a file holding
            // this text is the same topology.
            let yaml = serde_yaml_ng::to_string(&t.topology)?;
            println!("# topology {}, written out\n{yaml}", t.name);
            let run = Path::new("RUN");
            let files = ndharness::vm::GuestFiles::under(run, run, &t.topology);
            let spec = ndharness::vm::LaunchSpec {
                topology: &t.topology,
                kernel: Path::new("IMAGE/vmlinuz"),
                initrd: Path::new("IMAGE/initramfs.cpio"),
                files: &files,
                accel: ndharness::vm::Accel::Tcg,
                extra_append: "",
                incoming: None,
            };
            println!(
                "qemu-system-x86_64 {}",
                ndharness::vm::cmdline::argv(&spec).join(" ")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn find_root(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(r) = explicit {
        return Ok(r.to_owned());
    }
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        if dir.join("suites").is_dir() && dir.join("images").is_dir() {
            return Ok(dir.to_owned());
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("images").is_dir() {
        return Ok(built.canonicalize()?);
    }
    anyhow::bail!(
        "no ndharness repository (a folder with suites/ and images/) above {}: pass --root",
        cwd.display()
    )
}

fn build_options(common: &Common, resolved: &Resolved) -> BuildOptions {
    BuildOptions {
        cache: image::cache_dir(),
        mirror: common.mirror.clone(),
        user_kernel: resolved.user_kernel.clone(),
        user_ndctl: resolved.user_ndctl.clone(),
    }
}

fn image_cmd(action: ImageAction) -> anyhow::Result<ExitCode> {
    let (args, what) = match &action {
        ImageAction::Build(a) => (a, "build"),
        ImageAction::Lock(a) => (a, "lock"),
        ImageAction::Show(a) => (a, "show"),
    };
    let root = find_root(args.common.root.as_deref())?;
    let mut selection = args.select.selection(args.name.clone());
    selection.build_tree(&root.join("images"), &image::cache_dir())?;
    let resolved = selection.resolve(&root.join("images"))?;
    let files = ImageFiles::load(&root.join("images"), &resolved.image)?;
    let opts = build_options(&args.common, &resolved);
    match what {
        "lock" => {
            let lock = image::lock(&files, &opts)?;
            println!(
                "locked {} packages and kernel {} {} in {}",
                lock.packages.len(),
                lock.kernel.name,
                lock.kernel.version,
                files.lock_path.display()
            );
        }
        _ => {
            let start = std::time::Instant::now();
            let img = image::build(&files, &opts)?;
            let m = &img.manifest;
            println!(
                "image {} ({})",
                m.image,
                if img.built { "built" } else { "cached" }
            );
            println!("  folder    {}", img.dir.display());
            println!("  kernel    {} ({})", m.kernel_release, m.kernel_source);
            println!("  ndctl     {}", m.ndctl_source);
            println!("  initramfs {} bytes", m.initramfs_bytes);
            if what == "show" {
                println!("  packages  {}", m.packages.join(" "));
                println!("  modules   {}", m.modules.join(" "));
            }
            println!("  time      {:.2}s", start.elapsed().as_secs_f64());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config(g: &GuestArgs) -> anyhow::Result<Config> {
    let root = find_root(g.common.root.as_deref())?;
    let mut selection = g.select.selection(g.image.clone());
    selection.build_tree(&root.join("images"), &image::cache_dir())?;
    let resolved = selection.resolve(&root.join("images"))?;
    // insta resolves snapshot paths against the workspace; tell it which.
    std::env::set_var("INSTA_WORKSPACE_ROOT", &root);
    Ok(Config {
        runs_dir: g
            .runs_dir
            .clone()
            .unwrap_or_else(|| root.join("target/ndharness/runs")),
        results_dir: root.join("target/ndharness/results"),
        nfit_test_image: ndharness::select::nfit_test_image(&root.join("images"), &resolved),
        root,
        image: resolved.image.clone(),
        variants: resolved.variants.clone(),
        new_variant: false,
        collect: None,
        cold: g.machine.cold,
        build: build_options(&g.common, &resolved),
        accel: g.machine.accel,
        boot_timeout: Duration::from_secs(g.machine.boot_timeout),
    })
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    use ndharness::runner::compare;
    use ndharness::select::Selection;
    let root = find_root(args.common.root.as_deref())?;
    std::env::set_var("INSTA_WORKSPACE_ROOT", &root);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/ndharness/compare"));
    // Both resolved before anything boots: a typo fails in a second.
    let mut sides = Vec::new();
    for (label, spec) in [("baseline", &args.baseline), ("candidate", &args.candidate)] {
        let mut selection = Selection::parse(spec).with_context(|| format!("--{label} {spec}"))?;
        selection
            .build_tree(&root.join("images"), &image::cache_dir())
            .with_context(|| format!("--{label} {spec}"))?;
        let resolved = selection
            .resolve(&root.join("images"))
            .with_context(|| format!("--{label} {spec}"))?;
        let dir = out.join(label);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let config = Config {
            runs_dir: dir.join("runs"),
            results_dir: dir.clone(),
            root: root.clone(),
            nfit_test_image: ndharness::select::nfit_test_image(&root.join("images"), &resolved),
            image: resolved.image.clone(),
            variants: Vec::new(),
            new_variant: false,
            collect: Some(dir.join("snapshots")),
            cold: args.machine.cold || selection.cold,
            build: build_options(&args.common, &resolved),
            accel: args.machine.accel,
            boot_timeout: Duration::from_secs(args.machine.boot_timeout),
        };
        sides.push((label, spec.clone(), config));
    }
    let targs = libtest_mimic::Arguments {
        filter: args.filter.clone(),
        exact: args.exact,
        skip: args.skip.clone(),
        test_threads: args.test_threads,
        ..Default::default()
    };
    let mut ran = Vec::new();
    for (label, spec, config) in sides {
        println!("\n== {label}: {spec} (image {})", config.image);
        let snapshots = config.collect.clone().expect("set above");
        let o = runner::execute(config, &targs);
        ran.push(compare::Side {
            spec,
            info: o.info,
            exit_code: o.exit_code,
            snapshots,
            results: o.results,
        });
    }
    let candidate = ran.pop().expect("two sides");
    let baseline = ran.pop().expect("two sides");
    let c = compare::compare(baseline, candidate);
    print!("{}", compare::render_text(&c));
    let (json, html) = compare::write(&out, &c)?;
    println!("  report: {} {}", json.display(), html.display());
    Ok(ExitCode::from(c.exit_code()))
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args.guest)?;
    let env = runner::prepare(&config)?;
    if args.fresh_states {
        let states = config.build.cache.join("states");
        if states.exists() {
            std::fs::remove_dir_all(&states)
                .with_context(|| format!("removing {}", states.display()))?;
        }
    }
    let opts = runner::bench::Options {
        runs: args.runs.max(1),
        topologies: args.topologies.clone(),
        suite_filter: args.suite.clone(),
        suite_skip: args.suite_skip.clone(),
        test_threads: args.test_threads,
    };
    eprintln!(
        "bench: image {}, kernel {}, {}, {} runs each",
        env.image.manifest.image,
        env.image.manifest.kernel_release,
        env.accel.name(),
        opts.runs
    );
    let measures = runner::bench::bench(&config, &env, &opts)?;
    print!("{}", runner::bench::render(&measures));
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| config.root.join("target/ndharness/bench.json"));
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&measures)?)?;
    println!("  json: {}", json.display());
    Ok(ExitCode::SUCCESS)
}

fn bisect(args: BisectArgs) -> anyhow::Result<ExitCode> {
    let root = find_root(args.common.root.as_deref())?;
    let tree = &args.kernel_tree;
    let git = |a: &[&str]| -> anyhow::Result<std::process::ExitStatus> {
        Process::new("git")
            .arg("-C")
            .arg(tree)
            .args(a)
            .status()
            .with_context(|| format!("running git in {}", tree.display()))
    };
    if !git(&[
        "rev-parse",
        "--verify",
        "-q",
        &format!("{}^{{commit}}", args.good),
    ])?
    .success()
        || !git(&[
            "rev-parse",
            "--verify",
            "-q",
            &format!("{}^{{commit}}", args.bad),
        ])?
        .success()
    {
        anyhow::bail!(
            "{} has no commits {} and {}: --kernel-tree must be a git work tree holding both",
            tree.display(),
            args.good,
            args.bad
        );
    }
    if !git(&["bisect", "start", &args.bad, &args.good])?.success() {
        anyhow::bail!("git bisect start {} {} failed", args.bad, args.good);
    }
    let exe = std::env::current_exe()?;
    let mut step: Vec<String> = vec![
        exe.display().to_string(),
        "run".into(),
        args.case.clone(),
        "--bisect".into(),
        "--kernel-tree".into(),
        tree.canonicalize()?.display().to_string(),
        "--root".into(),
        root.display().to_string(),
        "--accel".into(),
        clap::ValueEnum::to_possible_value(&args.machine.accel)
            .expect("every accelerator has a name")
            .get_name()
            .to_owned(),
        "--boot-timeout".into(),
        args.machine.boot_timeout.to_string(),
    ];
    if args.exact {
        step.push("--exact".into());
    }
    if let Some(m) = &args.common.mirror {
        step.extend(["--mirror".into(), m.clone()]);
    }
    eprintln!("git bisect run {}", step.join(" "));
    let mut a = vec!["bisect", "run"];
    a.extend(step.iter().map(String::as_str));
    let status = git(&a)?;
    git(&["bisect", "log"])?;
    git(&["bisect", "reset"])?;
    Ok(ExitCode::from(if status.success() { 0 } else { 1 }))
}

fn states_cmd(action: StatesAction) -> anyhow::Result<ExitCode> {
    use ndharness::runner::warm::states;
    let dir = ndharness::image::cache_dir().join("states");
    match action {
        StatesAction::List => {
            let all = states::list(&dir);
            let now = std::time::SystemTime::now();
            for s in &all {
                let age = now.duration_since(s.last_used).unwrap_or_default();
                println!(
                    "{:>6.1} days ago  {:>6.0} MB  {:<16} {}",
                    age.as_secs_f64() / 86400.0,
                    s.bytes as f64 / 1e6,
                    s.topology,
                    s.dir.display()
                );
            }
            let total: u64 = all.iter().map(|s| s.bytes).sum();
            println!(
                "{} saved states, {:.1} GB in {} (most recently used last)",
                all.len(),
                total as f64 / 1e9,
                dir.display()
            );
        }
        StatesAction::Prune { older_than } => {
            let Ok(age) = std::time::Duration::try_from_secs_f64(older_than * 86400.0) else {
                anyhow::bail!("--older-than {older_than}: not a number of days");
            };
            let (n, freed) = states::prune(&dir, age);
            println!(
                "removed {n} saved states unused for {older_than} days ({:.1} GB) from {}",
                freed as f64 / 1e9,
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.bisect {
        // A bisect step judges; it leaves no pending snapshots behind.
        std::env::set_var("INSTA_UPDATE", "no");
        // A kernel that does not build is no verdict on the case.
        let code = match run_inner(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                125
            }
        };
        return Ok(ExitCode::from(code));
    }
    run_inner(args).map(ExitCode::from)
}

fn run_inner(args: RunArgs) -> anyhow::Result<u8> {
    let bisect = args.bisect;
    let mut config = config(&args.guest)?;
    if let Some(dir) = &args.results {
        config.results_dir = dir.clone();
    }
    if args.new_variant && config.variants.is_empty() {
        anyhow::bail!(
            "--new-variant: image `{}` has no snapshot variant (its snapshots are the shared ones); \
             variants are for images whose recipe lists `provides.variants`",
            config.image
        );
    }
    config.new_variant = args.new_variant;
    let mut targs = libtest_mimic::Arguments {
        filter: args.filter,
        list: args.list,
        exact: args.exact,
        ignored: args.ignored,
        include_ignored: args.include_ignored,
        skip: args.skip,
        // None: libtest's default, one guest per core.
        test_threads: args.test_threads,
        ..Default::default()
    };
    if targs.list {
        targs.test_threads = None;
    }
    let o = runner::execute(config, &targs);
    if !bisect {
        return Ok(o.exit_code);
    }
    Ok(match o.exit_code {
        _ if o.results.is_empty() => {
            eprintln!("error: no trial matches; stopping the bisection");
            128
        }
        2 => 125,
        c => c,
    })
}

fn boot(args: BootArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args.guest)?;
    let topology = ndharness::topology::load(&args.topology)?;
    let env = runner::prepare(&config)?;
    let group = runner::warm::TemplateSpec::plain(&topology);
    // A cold boot loads the topology's drivers and assembles its CXL
    // regions after the agent answers; so does a start from a state saved
    // with --save-state (before the drivers); a warm start from the cache
    // has them and reattaches its devices.
    use runner::start::SavePoint;
    let (state, point) = match &args.from_state {
        Some(p) => (Some(p.clone()), Some(SavePoint::BeforeDrivers)),
        None if args.save_state.is_some() => (None, None),
        None => match runner::warm::state(&config, &env, group)? {
            Some(s) => (Some(s.state), Some(s.point)),
            None => (None, None),
        },
    };
    let run = ndharness::vm::RunDir::create(
        &config.runs_dir,
        &format!("boot-{}", topology.name),
        &topology.topology,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let spec = ndharness::vm::StartSpec {
            qemu_binary: &env.qemu,
            image: &env.image,
            topology: &topology.topology,
            accel: env.accel,
            extra_append: "",
            boot_timeout: config.boot_timeout,
            incoming: state.as_deref(),
        };
        let evidence = run.path.clone();
        let mut m = ndharness::vm::Machine::start(&spec, run)
            .await
            .with_context(|| {
                format!(
                    "failed to boot {} (evidence kept in {})",
                    topology.name,
                    evidence.display()
                )
            })?;
        // The topologies whose devices QEMU does not restore.
        let unsaved = m.defers_drivers();
        if let Some(path) = &args.save_state {
            let t0 = std::time::Instant::now();
            m.save(path).await?.remove();
            eprintln!(
                "saved to {} in {:.2}s",
                path.display(),
                t0.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let t_drivers = std::time::Instant::now();
        if let Err(e) = runner::warm::ready_devices(&mut m, &topology.topology, point).await {
            let run = m.stop().await;
            anyhow::bail!("{e} (evidence kept in {})", run.path.display());
        }
        let prepared = t_drivers.elapsed();
        eprintln!(
            "guest ready in {:.2}s{} ({}, {}, QEMU pid {})",
            m.times.agent_ready.as_secs_f64(),
            if unsaved {
                format!(
                    ", {} in {:.2}s more",
                    if point == Some(SavePoint::Ready) {
                        "devices reattached"
                    } else {
                        "drivers and regions"
                    },
                    prepared.as_secs_f64()
                )
            } else {
                String::new()
            },
            env.accel.name(),
            if state.is_some() {
                "warm start"
            } else {
                "cold boot"
            },
            m.pid()
        );
        if args.command.is_empty() {
            eprintln!("  run folder   {}", m.run.path.display());
            eprintln!("  QMP socket   {}", m.run.files.qmp_socket.display());
            eprintln!("  agent socket {}", m.run.files.agent_socket.display());
            eprintln!("  serial log   {}", m.run.files.serial_log.display());
            eprintln!(
                "  try: socat - UNIX-CONNECT:{}",
                m.run.files.qmp_socket.display()
            );
            eprintln!("Ctrl-C stops the guest.");
            tokio::signal::ctrl_c().await.ok();
            m.stop().await.remove();
            return Ok(ExitCode::SUCCESS);
        }
        let out = m
            .exec(&args.command, Duration::from_secs(args.timeout))
            .await;
        let run = m.stop().await;
        let out =
            out.with_context(|| format!("in the guest (evidence kept in {})", run.path.display()))?;
        run.remove();
        eprintln!("command finished in {:.3}s", out.duration.as_secs_f64());
        use std::io::Write;
        std::io::stdout().write_all(&out.stdout)?;
        std::io::stderr().write_all(&out.stderr)?;
        Ok(ExitCode::from(
            out.exit_code.map(|c| c as u8).unwrap_or(128),
        ))
    })
}

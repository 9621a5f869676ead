//! `ndharness boot`: one guest, started as a trial's would be (booted, or
//! restored from a saved state, on the image its topology needs) with its
//! devices ready and the host folders of `--share` mounted; then COMMAND
//! run in it, or a shell in it at the terminal ([`super::shell`]), or the
//! guest left up until Ctrl-C when stdin is no terminal. `--gdb` boots it
//! cold with QEMU's gdbstub and prints how to attach.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ndharness::runner::start::SavePoint;
use ndharness::runner::{self, warm, Config, GuestEnv};
use ndharness::topology::Loaded;
use ndharness::vm::gdb::{self, KernelOrigin};
use ndharness::vm::{self, Machine, RunDir, StartSpec};

use super::args::BootArgs;
use super::shell::{self, End};

/// What the guest starts from: a saved state and the point of a guest's
/// life it was saved at, or neither (a cold boot).
struct Start {
    state: Option<PathBuf>,
    point: Option<SavePoint>,
}

pub fn boot(args: BootArgs) -> anyhow::Result<ExitCode> {
    // Without a command and without a terminal there is no shell to
    // give: said at once, not by a guest that waits for nobody.
    if args.command.is_empty() && !args.no_shell && !shell::wanted() {
        return Err(super::Usage(format!(
            "boot: no COMMAND, and stdin is not a terminal (no shell to open): give a command \
             after `--` (`ndharness boot -t {} -- ndctl list`), run it at a terminal for a \
             shell, or add --no-shell to keep the guest up until Ctrl-C",
            args.topology
        ))
        .into());
    }
    let mut config = args.guest.config()?;
    config.shares = args.share.shares.clone();
    let mut topology = ndharness::topology::load(&args.topology)?;
    if let Some(memory) = args.memory {
        topology.topology.machine.memory = memory;
    }
    if let Some(cpus) = args.cpus {
        topology.topology.machine.cpus = cpus;
    }
    let topology = topology;
    let env = runner::for_topology(&config, &topology)?;
    let start = starting_point(&args, &config, &env, &topology)?;
    let gdb = if args.gdb {
        Some(gdb::free_port().context("finding a free port for the gdbstub")?)
    } else {
        None
    };
    let run = RunDir::create(
        &config.runs_dir,
        &format!("boot-{}", topology.name),
        &topology.topology,
    )?;
    let spec = env
        .start_spec(&topology.topology, config.boot_timeout)
        .with_incoming(start.state.as_deref())
        .with_shares(&config.shares)
        .with_append(args.append.as_deref().unwrap_or_default())
        .with_gdb(gdb);
    if args.verbose {
        eprintln!("QEMU: {}", spec.qemu_binary.display());
        eprintln!("its command line goes to {}/qemu.argv", run.path.display());
    }
    if let Some(port) = gdb {
        print_gdb(&config, &env, port)?;
    }
    vm::runtime()?.block_on(drive(&args, &spec, &topology, run, &start))
}

/// How to attach gdb to the stub on `port`, with the kernel's symbols.
fn print_gdb(config: &Config, env: &GuestEnv, port: u16) -> anyhow::Result<()> {
    let release = &env.image.manifest.kernel_release;
    let recipe =
        ndharness::image::ImageFiles::load(&config.images_dir(), &env.image.manifest.image)?;
    let origin = match &config.build.user_kernel {
        Some(user) => KernelOrigin::Build(&user.bzimage),
        None if recipe.recipe.kernel.build.is_some() => KernelOrigin::FromSource(release),
        None => KernelOrigin::Packaged(release),
    };
    let symbols = gdb::symbols(origin);
    eprintln!("gdbstub on 127.0.0.1:{port}, kernel booted with nokaslr; attach with:");
    eprintln!("  {}", gdb::command(port, &symbols));
    if let gdb::Symbols::Missing(why) = &symbols {
        eprintln!("  VMLINUX: {why}");
    }
    Ok(())
}

/// Where the guest starts: `--from-state`, a cold boot when it is to be
/// saved, else the cache's saved state of its group when there is one.
/// A cold boot loads the topology's drivers and assembles its CXL regions
/// after the agent answers; so does a start from a state saved with
/// --save-state (before the drivers); a warm start from the cache has them
/// and reattaches its devices.
fn starting_point(
    args: &BootArgs,
    config: &Config,
    env: &GuestEnv,
    topology: &Loaded,
) -> anyhow::Result<Start> {
    let cold = Start {
        state: None,
        point: None,
    };
    // nokaslr (or --append) changes the kernel's command line: no saved
    // state has it.
    if args.gdb || args.append.is_some() {
        return Ok(cold);
    }
    if let Some(path) = &args.from_state {
        return Ok(Start {
            state: Some(path.clone()),
            point: Some(SavePoint::BeforeDrivers),
        });
    }
    if args.save_state.is_some() {
        return Ok(cold);
    }
    let group = warm::TemplateSpec::plain(topology, &config.shares);
    Ok(match warm::state(config, env, group)? {
        Some(saved) => Start {
            state: Some(saved.state),
            point: Some(saved.point),
        },
        None => cold,
    })
}

/// Starts the guest, then saves it (`--save-state`), or readies its devices
/// and runs COMMAND in it or keeps it up.
async fn drive(
    args: &BootArgs,
    spec: &StartSpec<'_>,
    topology: &Loaded,
    run: RunDir,
    start: &Start,
) -> anyhow::Result<ExitCode> {
    let evidence = run.path.clone();
    let mut m = Machine::start(spec, run).await.with_context(|| {
        format!(
            "failed to boot {} (evidence kept in {})",
            topology.name,
            evidence.display()
        )
    })?;
    // The topologies whose devices QEMU does not restore.
    let unsaved = m.defers_drivers();
    if let Some(path) = &args.save_state {
        return save(m, path).await;
    }
    let devices_started = Instant::now();
    if let Err(e) = warm::ready_devices(&mut m, &topology.topology, start.point).await {
        let run = m.stop().await;
        anyhow::bail!("{e} (evidence kept in {})", run.path.display());
    }
    let devices_took = unsaved.then(|| devices_started.elapsed());
    if let Err(e) = m.mount_shares().await {
        let run = m.stop().await;
        anyhow::bail!("{e} (evidence kept in {})", run.path.display());
    }
    eprintln!("{}", ready_line(&m, spec, start, devices_took));
    for s in spec.shares {
        eprintln!(
            "  {} at {} in the guest",
            s.host.display(),
            s.guest.display()
        );
    }
    if !args.command.is_empty() {
        return run_command(m, &args.command, args.timeout).await;
    }
    if args.no_shell || !shell::wanted() {
        return stay_up(m).await;
    }
    interactive_session(m, &topology.name).await
}

/// A shell in the guest until it ends; then the guest is stopped. Exits
/// with the shell's exit code (128 + the signal for a signal).
async fn interactive_session(m: Machine, name: &str) -> anyhow::Result<ExitCode> {
    let end = shell::session(&m, name).await;
    let (code, why) = match end {
        Ok(End::Exited(code)) => (code.unwrap_or(128), None),
        Ok(End::Escape) => (0, None),
        Ok(End::Signal(n)) => (128 + n, None),
        Ok(End::Gone(e)) => (2, Some(e.to_string())),
        Err(e) => (2, Some(format!("{e:#}"))),
    };
    let run = m.stop().await;
    // The terminal may be gone (SIGHUP): a line it cannot take is no panic.
    let mut stderr = std::io::stderr();
    let _ = match why {
        None => {
            run.remove();
            writeln!(stderr, "\r\nshell ended; guest stopped")
        }
        Some(why) => writeln!(
            stderr,
            "\r\nerror: {why} (evidence kept in {})",
            run.path.display()
        ),
    };
    Ok(ExitCode::from(code as u8))
}

async fn save(m: Machine, path: &Path) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    m.save(path).await?.remove();
    eprintln!(
        "saved to {} in {:.2}s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `guest ready in 1.23s, drivers and regions in 0.45s more (kvm, cold
/// boot, image nfit-test, QEMU pid 42)`; the devices' time only when the
/// harness readied them.
fn ready_line(
    m: &Machine,
    spec: &StartSpec<'_>,
    start: &Start,
    devices_took: Option<Duration>,
) -> String {
    let devices = match devices_took {
        Some(took) => format!(
            ", {} in {:.2}s more",
            if start.point == Some(SavePoint::Ready) {
                "devices reattached"
            } else {
                "drivers and regions"
            },
            took.as_secs_f64()
        ),
        None => String::new(),
    };
    format!(
        "guest ready in {:.2}s{devices} ({}, {}, image {}, QEMU pid {})",
        m.times.agent_ready.as_secs_f64(),
        spec.accel.name(),
        if start.state.is_some() {
            "warm start"
        } else {
            "cold boot"
        },
        spec.image.manifest.image,
        m.pid()
    )
}

/// Prints where to reach the guest and keeps it up until Ctrl-C (no shell:
/// `--no-shell`, or stdin is no terminal of this process's).
async fn stay_up(m: Machine) -> anyhow::Result<ExitCode> {
    let files = &m.run.files;
    eprintln!("  run folder   {}", m.run.path.display());
    eprintln!("  QMP socket   {}", files.qmp_socket.display());
    eprintln!("  agent socket {}", files.agent_socket.display());
    eprintln!("  serial log   {}", files.serial_log.display());
    eprintln!("  try: socat - UNIX-CONNECT:{}", files.qmp_socket.display());
    eprintln!("Ctrl-C stops the guest.");
    tokio::signal::ctrl_c().await.ok();
    m.stop().await.remove();
    Ok(ExitCode::SUCCESS)
}

/// Runs `command` in the guest, stops it, and passes on the command's
/// output and exit code (128 when it had none).
async fn run_command(
    m: Machine,
    command: &[String],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let out = m.exec(command, timeout).await;
    let run = m.stop().await;
    let out =
        out.with_context(|| format!("in the guest (evidence kept in {})", run.path.display()))?;
    run.remove();
    eprintln!("command finished in {:.3}s", out.duration.as_secs_f64());
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    Ok(ExitCode::from(
        out.exit_code.map(|c| c as u8).unwrap_or(128),
    ))
}

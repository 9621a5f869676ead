//! What the tests that drive a [`Machine`] themselves share: the repo's
//! configuration, the guest environment, and a cold start of one topology
//! (retried once after an infrastructure error, as the suite runner does).

use std::path::Path;
use std::time::Duration;

use ndharness::runner::{self, Config, GuestEnv};
use ndharness::topology::Loaded;
use ndharness::vm::RunDir;
use ndharness::vm::{Machine, StartSpec};

pub struct Guest {
    pub config: Config,
    pub env: GuestEnv,
    pub t: Loaded,
}

impl Guest {
    /// The image, QEMU and accelerator for `topology` (built if need be).
    pub fn new(topology: &str) -> Guest {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .canonicalize()
            .unwrap();
        let config = Config {
            boot_timeout: Duration::from_secs(120),
            ..Config::for_repo(root)
        };
        let env = runner::prepare(&config).expect("image, QEMU and accelerator");
        let t = ndharness::topology::load(topology).unwrap();
        Guest { config, env, t }
    }

    /// Boots the guest cold in a run folder named `name`.
    pub async fn start(&self, name: &str) -> Machine {
        let spec = StartSpec {
            qemu_binary: &self.env.qemu,
            image: &self.env.image,
            topology: &self.t.topology,
            accel: self.env.accel,
            extra_append: "",
            boot_timeout: self.config.boot_timeout,
            incoming: None,
            shares: &[],
            gdb: None,
            backing_from: None,
        };
        let run = || RunDir::create(&self.config.runs_dir, name, &self.t.topology).unwrap();
        match Machine::start(&spec, run()).await {
            Ok(m) => m,
            Err(e) if e.is_infrastructure() => {
                eprintln!("{name}: retrying after: {e}");
                Machine::start(&spec, run()).await.unwrap()
            }
            Err(e) => panic!("{e}"),
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

//! A private apt configuration: resolves and downloads the guest's packages
//! without touching the host's apt state (its lists, cache and status);
//! the host's sources are read only to find the archive when no mirror is
//! given.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::host::ensure_dir;
use super::{Error, Result};
use crate::stages::Stage;
use crate::tool::{self, Limit, Tool};

/// The archive the guest's packages come from.
#[derive(Clone, Debug)]
pub struct Archive {
    pub uri: String,
    pub signed_by: Option<String>,
}

impl Archive {
    /// The archive named by `--mirror` / `NDHARNESS_MIRROR`, or else the one
    /// the host's own apt sources use for Debian.
    pub fn discover(explicit: Option<&str>) -> Result<Archive> {
        if let Some(uri) = explicit.map(str::to_owned).or_else(|| {
            std::env::var("NDHARNESS_MIRROR")
                .ok()
                .filter(|s| !s.is_empty())
        }) {
            return Ok(Archive {
                uri,
                signed_by: default_keyring(),
            });
        }
        host_archive().ok_or(Error::NoArchive)
    }
}

fn default_keyring() -> Option<String> {
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    Path::new(keyring).exists().then(|| keyring.to_owned())
}

/// Reads deb822 `.sources` files first, then one-line `sources.list`.
fn host_archive() -> Option<Archive> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sources"))
        .collect();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(archive) = parse_deb822(&text) {
            return Some(archive);
        }
    }
    let text = std::fs::read_to_string("/etc/apt/sources.list").ok()?;
    parse_one_line(&text)
}

/// The first stanza whose suites are Debian's main suites (not security).
pub fn parse_deb822(text: &str) -> Option<Archive> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) else {
            continue;
        };
        if suites.contains("security")
            || !field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            continue;
        }
        let uri = uris.split_whitespace().next()?.to_owned();
        return Some(Archive {
            uri,
            signed_by: field("Signed-By:").or_else(default_keyring),
        });
    }
    None
}

pub fn parse_one_line(text: &str) -> Option<Archive> {
    text.lines().map(str::trim).find_map(|line| {
        let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
        (words.next()? == "deb").then_some(())?;
        let uri = words.next()?;
        let suite = words.next()?;
        (!suite.contains("security")).then(|| Archive {
            uri: uri.to_owned(),
            signed_by: default_keyring(),
        })
    })
}

/// One package apt would download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub filename: String,
}

/// Whether [`PrivateApt::resolve`] adds the packages' dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependencies {
    Included,
    Excluded,
}

/// apt's state for one suite, kept under the cache folder.
pub struct PrivateApt {
    root: PathBuf,
    /// An always-empty archives folder, so `--print-uris` lists every package
    /// of the closure rather than those not yet downloaded.
    resolve_dir: String,
}

impl PrivateApt {
    pub fn new(
        cache: &Path,
        archive: &Archive,
        suite: &str,
        components: &[String],
    ) -> Result<PrivateApt> {
        Self::with_kind(cache, archive, suite, components, "deb", suite)
    }

    /// apt's state for the source packages of one suite (`deb-src`).
    pub fn sources(
        cache: &Path,
        archive: &Archive,
        suite: &str,
        components: &[String],
    ) -> Result<PrivateApt> {
        Self::with_kind(
            cache,
            archive,
            suite,
            components,
            "deb-src",
            &format!("{suite}-src"),
        )
    }

    fn with_kind(
        cache: &Path,
        archive: &Archive,
        suite: &str,
        components: &[String],
        kind: &str,
        folder: &str,
    ) -> Result<PrivateApt> {
        let root = cache.join("apt").join(folder);
        for dir in [
            "lists/partial",
            "archives/partial",
            "resolve/partial",
            "etc",
        ] {
            ensure_dir(&root.join(dir))?;
        }
        let status = root.join("status");
        if !status.exists() {
            std::fs::write(&status, "").map_err(|e| Error::io(&status, e))?;
        }
        let signed = archive
            .signed_by
            .as_ref()
            .map(|k| format!(" [signed-by={k}]"))
            .unwrap_or_default();
        let list = format!(
            "{kind}{signed} {} {suite} {}\n",
            archive.uri,
            components.join(" ")
        );
        let list_path = root.join("etc/sources.list");
        std::fs::write(&list_path, list).map_err(|e| Error::io(&list_path, e))?;
        let resolve_dir = format!("Dir::Cache::Archives={}/resolve", root.display());
        Ok(PrivateApt { root, resolve_dir })
    }

    fn options(&self) -> Vec<String> {
        let root = self.root.display();
        [
            format!("Dir::Etc::SourceList={root}/etc/sources.list"),
            "Dir::Etc::SourceParts=/dev/null".into(),
            "Dir::Etc::Preferences=/dev/null".into(),
            "Dir::Etc::PreferencesParts=/dev/null".into(),
            format!("Dir::State={root}"),
            format!("Dir::State::Lists={root}/lists"),
            format!("Dir::State::status={root}/status"),
            format!("Dir::Cache={root}"),
            format!("Dir::Cache::Archives={root}/archives"),
            "APT::Architecture=amd64".into(),
            "APT::Install-Recommends=false".into(),
            "Debug::NoLocking=true".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect()
    }

    /// Runs apt's `program` with the private configuration and `args`;
    /// its stdout. `on_line` sees each line as it comes.
    fn apt(
        &self,
        program: &str,
        args: &[&str],
        cwd: Option<&Path>,
        limit: Limit,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let mut cmd = Command::new(program);
        cmd.args(self.options()).args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let shown = format!("{program} {}", args.join(" "));
        match Tool::new(limit, &mut cmd)
            .shown(format!("`{shown}`"))
            .on_line(on_line)
            .run()
        {
            Ok(done) => Ok(done.stdout_text()),
            Err(tool::Error::Failed { stderr, tail, .. }) => Err(Error::Apt {
                command: shown,
                stderr: apt_message(&stderr, &tail),
            }),
            Err(other) => Err(other.into()),
        }
    }

    fn query(&self, program: &str, args: &[&str]) -> Result<String> {
        self.apt(program, args, None, tool::APT_QUERY, &mut |_| {})
    }

    pub fn update(&self) -> Result<()> {
        self.apt(
            "apt-get",
            &["-q", "update"],
            None,
            tool::APT_UPDATE,
            &mut |_| {},
        )
        .map(drop)
    }

    /// The names of the packages in the suite that match `glob`.
    pub fn names_matching(&self, glob: &str) -> Result<Vec<String>> {
        let out = self.query("apt-cache", &["pkgnames"])?;
        Ok(out
            .lines()
            .filter(|n| super::recipe::glob_match(glob, n))
            .map(str::to_owned)
            .collect())
    }

    /// The candidate version of `name`.
    pub fn candidate(&self, name: &str) -> Result<String> {
        let out = self.query("apt-cache", &["policy", name])?;
        out.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Candidate:")
                    .map(|v| v.trim().to_owned())
            })
            .filter(|v| v != "(none)")
            .ok_or_else(|| Error::Apt {
                command: format!("apt-cache policy {name}"),
                stderr: "no candidate version".into(),
            })
    }

    /// The `Depends:` field of `name` at `version`, as apt-cache shows it.
    pub fn depends(&self, name: &str, version: &str) -> Result<String> {
        let out = self.query("apt-cache", &["show", &format!("{name}={version}")])?;
        Ok(out
            .lines()
            .find_map(|l| l.strip_prefix("Depends:"))
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// `packages` as apt would download them: with their closure on an empty
    /// system, or exactly the packages named.
    pub fn resolve(&self, packages: &[String], deps: Dependencies) -> Result<Vec<Resolved>> {
        let mut args: Vec<&str> = if deps == Dependencies::Included {
            vec![
                "-q",
                "-y",
                "--print-uris",
                "-o",
                &self.resolve_dir,
                "install",
            ]
        } else {
            vec!["-q", "--print-uris", "download"]
        };
        args.extend(packages.iter().map(String::as_str));
        let out = self.query("apt-get", &args)?;
        Ok(out.lines().filter_map(parse_print_uri).collect())
    }

    /// The upstream tarball of source package `name` at `version`, fetched
    /// into `dest`: its file name, size and sha256.
    pub fn fetch_orig(
        &self,
        name: &str,
        version: &str,
        dest: &Path,
    ) -> Result<(String, u64, String)> {
        let spec = format!("{name}={version}");
        let out = self.apt(
            "apt-get",
            &["-q", "--print-uris", "source", &spec],
            Some(dest),
            tool::APT_QUERY,
            &mut |_| {},
        )?;
        let (uri, file, size, sha256) = out
            .lines()
            .filter_map(parse_source_uri)
            .find(|(_, f, ..)| f.contains(".orig.tar."))
            .ok_or_else(|| Error::Apt {
                command: format!("apt-get --print-uris source {spec}"),
                stderr: "no upstream tarball (.orig.tar.*) listed".into(),
            })?;
        let target = dest.join(&file);
        let helper = "/usr/lib/apt/apt-helper";
        let mut cmd = Command::new(helper);
        cmd.args(self.options())
            .arg("download-file")
            .arg(&uri)
            .arg(&target)
            .arg(format!("SHA256:{sha256}"));
        let shown = format!("apt-helper download-file {uri}");
        match Tool::new(tool::APT_DOWNLOAD, &mut cmd)
            .shown(format!("`{shown}`"))
            .run()
        {
            Ok(_) => {}
            Err(tool::Error::Failed { stderr, tail, .. }) => {
                return Err(Error::Apt {
                    command: shown,
                    stderr: apt_message(&stderr, &tail),
                })
            }
            Err(other) => return Err(other.into()),
        }
        Ok((file, size, sha256))
    }

    /// Downloads exact `name=version` specs into `dest`; `stage` counts
    /// each package as apt fetches it.
    pub fn download(
        &self,
        specs: &[String],
        dest: &Path,
        relock: &str,
        stage: &mut Stage,
    ) -> Result<()> {
        if specs.is_empty() {
            return Ok(());
        }
        let mut args = vec!["-q", "download"];
        args.extend(specs.iter().map(String::as_str));
        let mut on_line = |line: &str| {
            if let Some(got) = line.strip_prefix("Get:") {
                stage.inc(1);
                // Get:N URI SUITE/COMPONENT ARCH PACKAGE ARCH VERSION [SIZE]
                stage.item(got.split_whitespace().nth(4).unwrap_or(got));
            }
        };
        self.apt(
            "apt-get",
            &args,
            Some(dest),
            tool::APT_DOWNLOAD,
            &mut on_line,
        )
        .map(drop)
        .map_err(|e| match e {
            Error::Apt { stderr, .. } if stderr.contains("was not found") => Error::Unavailable {
                detail: stderr,
                relock: relock.to_owned(),
            },
            other => other,
        })
    }
}

/// The packages a kernel metapackage is made of: the `linux-*` names it
/// depends on at exactly its own `version` (7.x's `linux-image-VER` pulls
/// `linux-binary-VER`, `linux-modules-VER` and `linux-base-VER` so). A 6.x
/// kernel package, which holds everything itself, has none.
pub fn kernel_parts(depends: &str, version: &str) -> Vec<String> {
    let exact = format!("(= {version})");
    depends
        .split(',')
        .filter(|alt| !alt.contains('|'))
        .filter_map(|dep| {
            let dep = dep.trim();
            let (name, constraint) = dep.split_once(' ')?;
            (name.starts_with("linux-") && constraint.trim() == exact).then(|| name.to_owned())
        })
        .collect()
}

/// What a failed apt says: its stderr, or (when that is empty) the last
/// lines of its output.
fn apt_message(stderr: &str, tail: &tool::Tail) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return tail.0.join("\n");
    }
    let lines: Vec<&str> = stderr.lines().collect();
    lines[lines.len().saturating_sub(tool::TAIL_LINES)..].join("\n")
}

/// `'URI' FILENAME SIZE HASH` lines of `apt-get --print-uris`.
pub fn parse_print_uri(line: &str) -> Option<Resolved> {
    let mut words = line.split_whitespace();
    let uri = words.next()?;
    if !uri.starts_with('\'') {
        return None;
    }
    let filename = words.next()?.to_owned();
    parse_deb_filename(&filename).map(|(name, version, arch)| Resolved {
        name,
        version,
        arch,
        filename,
    })
}

/// `'URI' FILE SIZE SHA256:HASH` lines of `apt-get --print-uris source`.
pub fn parse_source_uri(line: &str) -> Option<(String, String, u64, String)> {
    let mut words = line.split_whitespace();
    let uri = words
        .next()?
        .strip_prefix('\'')?
        .strip_suffix('\'')?
        .to_owned();
    let file = words.next()?.to_owned();
    let size = words.next()?.parse().ok()?;
    let sha256 = words.next()?.strip_prefix("SHA256:")?.to_owned();
    Some((uri, file, size, sha256))
}

/// `name_version_arch.deb`, with the epoch's `:` written `%3a`.
pub fn parse_deb_filename(filename: &str) -> Option<(String, String, String)> {
    let stem = filename.strip_suffix(".deb")?;
    let mut parts = stem.splitn(3, '_');
    let name = parts.next()?.to_owned();
    let version = parts.next()?.replace("%3a", ":");
    let arch = parts.next()?.to_owned();
    Some((name, version, arch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_skips_security() {
        let text = "Types: deb\nURIs: http://archive.example/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb\nURIs: http://archive.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n";
        let a = parse_deb822(text).unwrap();
        assert_eq!(a.uri, "http://archive.example/debian");
        assert_eq!(a.signed_by.as_deref(), Some("/k.gpg"));
    }

    #[test]
    fn a_7x_metapackage_is_made_of_its_exact_version_parts() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
            linux-base-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), \
            linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), \
            linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-base (>= 4.17~)";
        assert_eq!(
            kernel_parts(depends, "7.3.4-1~bpo13+1"),
            [
                "linux-base-7.3.4+deb13-amd64",
                "linux-binary-7.3.4+deb13-amd64",
                "linux-modules-7.3.4+deb13-amd64"
            ]
        );
        // 6.12's package holds its image and modules itself.
        assert!(kernel_parts(
            "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool",
            "6.12.117-1"
        )
        .is_empty());
    }

    #[test]
    fn one_line_sources() {
        let a = parse_one_line("# c\ndeb [arch=amd64] http://a.example/debian bookworm main\n")
            .unwrap();
        assert_eq!(a.uri, "http://a.example/debian");
    }

    #[test]
    fn source_uri_line() {
        let (uri, file, size, sha) = parse_source_uri(
            "'http://a.example/debian/pool/main/n/ndctl/ndctl_81.orig.tar.gz' ndctl_81.orig.tar.gz 436889 SHA256:e407",
        )
        .unwrap();
        assert_eq!(
            uri,
            "http://a.example/debian/pool/main/n/ndctl/ndctl_81.orig.tar.gz"
        );
        assert_eq!(
            (file.as_str(), size, sha.as_str()),
            ("ndctl_81.orig.tar.gz", 436889, "e407")
        );
        assert!(parse_source_uri("Need to get 452 kB of source archives.").is_none());
    }

    #[test]
    fn print_uri_line() {
        let r = parse_print_uri(
            "'http://a.example/debian/pool/main/b/busybox/busybox-static_1%3a1.37.0-6+b9_amd64.deb' busybox-static_1%3a1.37.0-6+b9_amd64.deb 1234 MD5Sum:00",
        )
        .unwrap();
        assert_eq!(r.name, "busybox-static");
        assert_eq!(r.version, "1:1.37.0-6+b9");
        assert_eq!(r.arch, "amd64");
    }
}

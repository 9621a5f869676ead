//! The machine coming back after a cut: a guest started (from the trial's
//! state saved before its pmem drivers, or cold) on a run folder whose
//! backing files are a crash image's, its drivers loaded and its CXL
//! regions created again with their labels kept, then asked what it found:
//! the namespaces (sysfs), whether the regions came back, `ndctl
//! check-labels` on every DIMM and one more create (when the image holds
//! labels and the region has room), the sectors (and whether writes to the
//! sectors after them leave them be) and the filesystem a case names.
//! Kernel reports on the way are kept.

use std::path::Path;
use std::time::Duration;

use super::classify::GuestView;
use super::filesystem::{self, FilesystemView};
use super::labels::Uuid;
use super::media::Media;
use super::record::CrashImage;
use super::sectors;
use crate::assemble::Labels;
use crate::case_guest::{self, CaseGuest, Prepared, Regions};
use crate::command_line::shell;
use crate::suite::{FilesystemCheck, SectorCheck};
use crate::vm::machine::{self, Machine, StartSpec};
use crate::vm::RunDir;

impl Error {
    pub fn is_infrastructure(&self) -> bool {
        match self {
            Error::Guest(e) => e.is_infrastructure(),
            Error::Driven(e) => e.is_infrastructure(),
            Error::Qemu(_) => true,
        }
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guest failed the harness or the host (infrastructure), or the
    /// kernel failed the guest (a finding): [`Error::is_infrastructure`].
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::Error),
    #[error(transparent)]
    Guest(#[from] machine::Error),
    #[error(transparent)]
    Driven(#[from] case_guest::Error),
}

/// What a restart is asked beyond the namespaces.
pub struct Checks<'a> {
    /// The regions the topology has (a restart that shows fewer lost one).
    pub regions: usize,
    pub sectors: Option<&'a SectorCheck>,
    /// The filesystem to check, with the kept files' checksums.
    pub filesystem: Option<(&'a FilesystemCheck, &'a str)>,
}

/// What a restarted guest showed (or how looking failed: a kernel that
/// panics on the image is a finding), and its run folder.
pub type Looked = (Result<GuestView, Error>, RunDir);

/// Starts a guest on `image` in a run folder `name` under `runs_dir` and
/// returns what it showed, with the stopped guest's run folder.
pub async fn restart(
    spec: &StartSpec<'_>,
    runs_dir: &Path,
    name: &str,
    image: &CrashImage,
    media: &Media,
    checks: &Checks<'_>,
) -> Result<Looked, Error> {
    let mut guest = CaseGuest::start_on_image(spec, runs_dir, name, &image.dir).await?;
    let view = look(&mut guest, media, checks).await;
    let run = guest.kill().await.expect("a running guest");
    Ok((view, run))
}

async fn look(
    guest: &mut CaseGuest<'_>,
    media: &Media,
    checks: &Checks<'_>,
) -> Result<GuestView, Error> {
    let mut view = GuestView::default();
    let brought_up = guest
        .bring_up(Regions::Assemble(Labels::Keep), 0, |part| match part {
            Prepared::Drivers { output, .. } if !output.success() => Err(format!(
                "loading the drivers failed: {}",
                output.stderr_text().trim()
            )),
            Prepared::Step { line, run, .. } if !run.output.success() => Err(format!(
                "`{line}` failed: {}",
                run.output.stderr_text().trim()
            )),
            _ => Ok(()),
        })
        .await;
    match brought_up {
        Ok(Ok(_)) => {}
        Ok(Err(failure)) => view.setup_failure = Some(failure),
        Err(case_guest::Error::Assembly(e)) => {
            view.setup_failure = Some(format!("assembling the CXL regions: {e}"))
        }
        Err(e) => return Err(e.into()),
    }
    let m = guest.machine();
    collect_reports(m, &mut view).await?;
    let listed = m.exec(&shell(LIST), COMMAND_TIMEOUT).await?;
    let mut said = format!("$ list\n{}", listed.stdout_text());
    let regions = parse_listing(&listed.stdout_text(), &mut view);
    view.region_enabled = regions.len() >= checks.regions && regions.iter().all(|r| r.enabled);
    if media.labelled {
        let out = m.exec(&shell(CHECK_LABELS), COMMAND_TIMEOUT).await?;
        said.push_str(&format!(
            "$ check-labels\n{}{}",
            out.stdout_text(),
            out.stderr_text()
        ));
        view.check_labels = out
            .stdout_text()
            .lines()
            .filter_map(|l| {
                let (dimm, status) = l.strip_prefix("check ")?.split_once(' ')?;
                Some((dimm.to_owned(), status == "0"))
            })
            .collect();
    }
    if let Some(s) = checks.sectors {
        view.sectors = Some(look_at_sectors(m, s, &mut said).await?);
    }
    if let Some((check, checksums)) = checks.filesystem {
        view.filesystem = Some(look_at_filesystem(m, check, checksums, &mut said).await?);
        collect_reports(m, &mut view).await?;
    }
    if media.labelled {
        if let Some(room) = regions.iter().find(|r| r.enabled && r.available >= r.align) {
            let create = format!(
                "ndctl create-namespace -r {} -m raw -s {}",
                room.name, room.align
            );
            let out = m.exec(&shell(&create), COMMAND_TIMEOUT).await?;
            said.push_str(&format!(
                "$ {create}\n{}{}",
                out.stdout_text(),
                out.stderr_text()
            ));
            view.further_create = Some(out.success());
            collect_reports(m, &mut view).await?;
        }
    }
    // What the guest said, for the evidence of a violation.
    let _ = std::fs::write(m.run.path.join("view.txt"), said);
    Ok(view)
}

/// Reads the case's sectors and judges them; with `then_write`, writes the
/// sectors after them from each CPU and reads them again. What the writes
/// said goes to `said`.
async fn look_at_sectors(
    m: &mut Machine,
    check: &SectorCheck,
    said: &mut String,
) -> Result<sectors::SectorTally, Error> {
    let read = format!(
        "dd if={} bs={} count={} 2>/dev/null",
        check.device, check.size, check.count
    );
    let out = m.exec(&shell(&read), COMMAND_TIMEOUT).await?;
    let mut tally = sectors::tally(&out.stdout, check.size, check.count, &check.values);
    if check.then_write > 0 {
        let wrote = m
            .exec(&shell(sectors::write_others(check)), COMMAND_TIMEOUT)
            .await?;
        let complaint = wrote.stderr_text().trim().to_owned();
        said.push_str(&format!("$ write the sectors after them\n{complaint}\n"));
        let write_failure = (!wrote.success() || !complaint.is_empty())
            .then(|| complaint.lines().next().unwrap_or("failed").to_owned());
        let again = m.exec(&shell(&read), COMMAND_TIMEOUT).await?;
        sectors::after_writes(
            &mut tally,
            &out.stdout,
            &again.stdout,
            check.size,
            write_failure,
        );
    }
    Ok(tally)
}

/// Mounts the case's filesystem, checks its kept files, unmounts it and
/// runs e2fsck; what they said goes to `said`.
async fn look_at_filesystem(
    m: &mut Machine,
    check: &FilesystemCheck,
    checksums: &str,
    said: &mut String,
) -> Result<FilesystemView, Error> {
    let verify = m
        .exec(
            &shell(filesystem::verify_command(check, checksums)),
            COMMAND_TIMEOUT,
        )
        .await?;
    let fsck = m
        .exec(&shell(filesystem::fsck_command(check)), COMMAND_TIMEOUT)
        .await?;
    said.push_str(&format!(
        "$ mount, sha256sum -c\n{}{}$ e2fsck -fn\n{}{}",
        verify.stdout_text(),
        verify.stderr_text(),
        fsck.stdout_text(),
        fsck.stderr_text()
    ));
    let failed = if verify.success() { &fsck } else { &verify };
    Ok(FilesystemView {
        kept_intact: verify.success(),
        fsck_clean: fsck.success(),
        detail: filesystem::first_lines(
            &format!("{}{}", failed.stdout_text(), failed.stderr_text()),
            3,
        ),
    })
}

/// Kernel reports since the last look, first lines.
async fn collect_reports(m: &mut Machine, view: &mut GuestView) -> Result<(), Error> {
    m.read_kernel_log().await?;
    for r in m.take_unattributed() {
        if crate::kmsg::problem(&r).is_some() {
            view.kernel_reports.push(r.message.clone());
        }
    }
    Ok(())
}

/// Lists the namespaces that have a UUID and capacity, and the regions.
const LIST: &str = "for n in /sys/bus/nd/devices/namespace*; do \
     [ -e $n/uuid ] || continue; s=$(cat $n/size); [ \"$s\" = 0 ] && continue; \
     echo \"ns $(cat $n/uuid) $s\"; done; \
     for r in /sys/bus/nd/devices/region*; do [ -e $r ] || continue; \
     e=0; [ -e $r/driver ] && e=1; \
     echo \"region ${r##*/} $e $(cat $r/available_size 2>/dev/null || echo 0) $(cat $r/align 2>/dev/null || echo 0)\"; done";

const CHECK_LABELS: &str = "for d in /sys/bus/nd/devices/nmem*; do \
     ndctl check-labels ${d##*/} >&2; echo \"check ${d##*/} $?\"; done";

/// A region as the listing shows it.
#[derive(Debug, PartialEq, Eq)]
struct ListedRegion {
    name: String,
    enabled: bool,
    available: u64,
    align: u64,
}

/// Reads [`LIST`]'s output: namespaces into `view`, regions returned.
fn parse_listing(text: &str, view: &mut GuestView) -> Vec<ListedRegion> {
    let mut regions = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ns", uuid, size] => {
                if let (Some(uuid), Ok(size)) = (Uuid::parse(uuid), size.parse()) {
                    view.namespaces.insert((uuid, size));
                }
            }
            ["region", name, enabled, available, align] => regions.push(ListedRegion {
                name: (*name).to_owned(),
                enabled: *enabled == "1",
                available: number(available),
                align: number(align),
            }),
            _ => {}
        }
    }
    regions
}

/// A sysfs number, decimal or `0x` hex (a region's `align`).
fn number(text: &str) -> u64 {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(0),
        None => text.parse().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_gives_namespaces_with_uuids_and_the_regions() {
        let mut view = GuestView::default();
        let text = "ns 5b6f3e36-0a8f-4b1c-9a53-7b1f0f6c2e11 67108864\n\
                    region region0 1 1006632960 0x1000000\n\
                    region region1 0 0 0\n";
        let regions = parse_listing(text, &mut view);
        assert_eq!(view.namespaces.len(), 1);
        assert_eq!(regions.len(), 2);
        assert!(regions[0].enabled && !regions[1].enabled);
        assert_eq!(regions[0].align, 16 << 20);
    }
}

//! What each explore operation is as a shell line in this guest: the
//! namespace a slot names found by its UUID, a create's size resolved
//! against the region as it is, the DIMM a position names, and the CXL
//! region's own commands (cycle, re-creation, driver reload, unbind).

use super::ExploreGuest;
use crate::explore::invariant::{self, CreateRequest};
use crate::explore::model::{MapLocation, Op, SizeChoice, Slot};
use crate::explore::observe::Observation;

/// Waits for the nd buses' asynchronous probes (namespaces after a
/// region comes back).
const FLUSH_PROBES: &str = "cat /sys/bus/nd/devices/ndbus*/wait_probe >/dev/null";
/// Counts the memdevs into `n` (before their drivers go away).
const COUNT_MEMDEVS: &str = "n=$(ls -d /sys/bus/cxl/devices/mem* | wc -l)";
/// Waits (10 s at most) until each of the `n` memdevs has its endpoint
/// again: what `cxl create-region` needs after `cxl_mem` is loaded.
const WAIT_ENDPOINTS: &str = "i=0; \
     until [ $(ls -d /sys/bus/cxl/devices/endpoint* 2>/dev/null | wc -l) -ge $n ]; do \
     i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.05; done";
/// Unloads `cxl_pmem` and `cxl_mem` with whatever modules hold them on
/// this kernel (none on 6.12; `cxl_acpi` and `cxl_pci` on 7.x, whose
/// drivers import from them), then loads back every module it unloaded.
const RELOAD_CXL_DRIVERS: &str = "u=; unload() { for h in /sys/module/$1/holders/*; do \
     [ -e \"$h\" ] && unload \"${h##*/}\"; done; rmmod \"$1\" && u=\"$u $1\"; }; \
     unload cxl_pmem && unload cxl_mem && modprobe -a $u";

/// The sysfs files that take a CXL DIMM's nvdimm from the pmem stack and
/// give it back (absent where the kernel does not offer it: 6.12).
const NVDIMM_UNBIND: &str = "/sys/bus/cxl/drivers/cxl_nvdimm/unbind";
const NVDIMM_BIND: &str = "/sys/bus/cxl/drivers/cxl_nvdimm/bind";

impl ExploreGuest<'_> {
    /// The device of `slot`'s namespace now, found by its UUID.
    fn device(&self, slot: Slot, seen: &Observation) -> Option<String> {
        let uuid = self.uuids.get(&slot)?;
        seen.listed
            .iter()
            .find(|n| n.uuid.as_deref() == Some(uuid))
            .map(|n| n.dev.clone())
    }

    /// The command `op` is on this guest, and the create it asks for; none
    /// when it names a namespace the guest does not have (its create was
    /// refused): the step is skipped.
    pub fn command(
        &self,
        op: &Op,
        before: &Observation,
    ) -> Option<(String, Option<CreateRequest>)> {
        let region = &self.region;
        let dev = |slot: &Slot| self.device(*slot, before);
        let command = match op {
            Op::Create {
                mode,
                size,
                align,
                map,
                ..
            } => {
                let bytes = resolve(*size, before);
                let mut c = format!("ndctl create-namespace -r {region} -m {mode} -s {bytes}");
                if let Some(a) = align {
                    c.push_str(&format!(" -a {a}"));
                }
                match map {
                    Some(MapLocation::Device) => c.push_str(" -M dev"),
                    Some(MapLocation::Memory) => c.push_str(" -M mem"),
                    None => {}
                }
                let request = CreateRequest { mode: *mode, bytes };
                return Some((c, Some(request)));
            }
            Op::Destroy { slot } => format!("ndctl destroy-namespace -f {}", dev(slot)?),
            Op::Disable { slot } => format!("ndctl disable-namespace {}", dev(slot)?),
            Op::Enable { slot } => format!("ndctl enable-namespace {}", dev(slot)?),
            Op::Reconfigure { slot, mode } => {
                format!("ndctl create-namespace -f -e {} -m {mode}", dev(slot)?)
            }
            // daxctl onlines the memory itself and refuses while the
            // kernel's policy would online it first (the guests' default):
            // without the policy set to offline the round trip never
            // reaches kmem. A conversion that failed half way (kmem bound,
            // the memory not online) is undone before the refusal is told.
            Op::DaxRoundTrip { slot } => {
                let chardev = before.listed(&dev(slot)?)?.chardev.clone()?;
                format!(
                    "echo offline > /sys/devices/system/memory/auto_online_blocks; \
                     daxctl reconfigure-device -m system-ram {chardev} || \
                     {{ daxctl reconfigure-device -f -m devdax {chardev}; exit {}; }}; \
                     daxctl reconfigure-device -f -m devdax {chardev}",
                    invariant::SYSTEM_RAM_REFUSED
                )
            }
            Op::RegionDisable => format!("ndctl disable-region {region}"),
            Op::RegionEnable => format!("ndctl enable-region {region}"),
            Op::WriteAlign { align } => {
                format!("echo {align} > /sys/bus/nd/devices/{region}/align")
            }
            Op::InitLabels => "ndctl init-labels -f all".into(),
            Op::Reboot => "reboot".into(),
            Op::CxlRegionCycle => format!(
                "cxl disable-region {0} && cxl enable-region {0} && {FLUSH_PROBES}",
                self.cxl_region
            ),
            Op::CxlRegionRecreate => format!(
                "cxl destroy-region -f {} && {} >/dev/null",
                self.cxl_region, self.recreate
            ),
            // The region is created again after the reload, planned anew:
            // the memdevs may come back under other names.
            Op::CxlDriverReload => format!(
                "{COUNT_MEMDEVS} && cxl destroy-region -f {} && {RELOAD_CXL_DRIVERS} && {WAIT_ENDPOINTS}",
                self.cxl_region
            ),
            Op::CxlDimmUnbind { position } => {
                let dimm = self.dimms.get(*position as usize)?;
                format!(
                    "u={NVDIMM_UNBIND}; if [ -e $u ]; then echo {dimm} > $u && echo unbound {dimm}; \
                     else echo \"cxl_nvdimm has no unbind file\"; fi"
                )
            }
            Op::CxlDimmBind => format!(
                "echo {} > {NVDIMM_BIND} && cxl disable-region {1} && cxl enable-region {1} && {FLUSH_PROBES}",
                self.unbound.as_ref()?,
                self.cxl_region
            ),
            // The exit status says where the DIMM is: ndctl may skip a
            // DIMM it finds busy and still exit 0.
            Op::DimmDisable { position } => {
                let dimm = self.nmems.get(*position as usize)?;
                format!("ndctl disable-dimm {dimm}; test ! -e /sys/bus/nd/devices/{dimm}/driver")
            }
            Op::DimmEnable => {
                let dimm = self.disabled_dimm.as_ref()?;
                format!("ndctl enable-dimm {dimm}; test -e /sys/bus/nd/devices/{dimm}/driver")
            }
            Op::Prepare => return None,
        };
        Some((command, None))
    }
}

/// Bytes for a size choice on the region as it is.
fn resolve(size: SizeChoice, seen: &Observation) -> u64 {
    let (region_size, align, available) = seen
        .region
        .map_or((0, 1, 0), |r| (r.size, r.align.max(1), r.available));
    match size {
        SizeChoice::Aligns(k) => u64::from(k) * align,
        SizeChoice::OffAlign { aligns, delta } => {
            (u64::from(aligns) * align).saturating_add_signed(i64::from(delta))
        }
        SizeChoice::Available => available,
        SizeChoice::Whole => region_size,
    }
}

//! How many guests run at once: one per core, fewer when the memory
//! available now would not hold them.

use crate::topology::Topology;

/// What one guest takes of the host's memory: its RAM (the NVDIMM and CXL
/// backing files are sparse files in the page cache) and QEMU itself.
pub fn guest_memory(t: &Topology) -> u64 {
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

//! Seeded choices, the same for the same seed run after run: the
//! splitmix64 sequence, and a sample drawn with it. What power cuts' random
//! moments and sampled crash points, and mutate's generated mutants, are
//! chosen by.

/// The next number of the splitmix64 sequence at `state`.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` of `pool` (all when it has fewer), drawn without replacement with
/// `seed`, in the order drawn.
pub fn sample<T>(mut pool: Vec<T>, n: usize, seed: u64) -> Vec<T> {
    let mut state = seed;
    let mut out = Vec::new();
    while out.len() < n && !pool.is_empty() {
        let z = splitmix64(&mut state);
        out.push(pool.swap_remove((z % pool.len() as u64) as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sample_and_another_seed_another() {
        let pool: Vec<u32> = (0..100).collect();
        let a = sample(pool.clone(), 10, 7);
        assert_eq!(a, sample(pool.clone(), 10, 7));
        assert_ne!(a, sample(pool.clone(), 10, 8));
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "no repeats");
        assert_eq!(sample(vec![1, 2], 5, 1).len(), 2);
    }
}

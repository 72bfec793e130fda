//! Where an entropy device's bytes come from: the CPU's RNDR when it has FEAT_RNG, else a
//! generator seeded from the counter. The second is not a source of secrets (its seed is a
//! time): the backend says which it uses (`vm stat`, docs/ARCHITECTURE.md).

/// A source of random bytes.
pub trait Source {
    /// Fills `out`.
    fn fill(&mut self, out: &mut [u8]);
    /// Whether the bytes come from hardware (RNDR) rather than a seeded generator.
    fn hardware(&self) -> bool;
}

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: fast, well-distributed, and
/// predictable to anyone who knows the seed.
pub struct Seeded {
    s: [u64; 4],
}

impl Seeded {
    /// A generator whose whole state follows from `seed`.
    pub fn new(seed: u64) -> Seeded {
        let mut x = seed;
        let mut split = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Seeded { s: [split(), split(), split(), split()] }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

impl Source for Seeded {
    fn fill(&mut self, out: &mut [u8]) {
        fill_words(out, || self.next_u64());
    }
    fn hardware(&self) -> bool {
        false
    }
}

/// The CPU's RNDR; when it fails to give a number (it may, rarely), the seeded generator
/// fills in, so a request is never left short.
pub struct Rndr {
    read: fn() -> Option<u64>,
    fallback: Seeded,
    /// Words the fallback had to give.
    pub fallbacks: u64,
}

impl Rndr {
    /// RNDR through `read` (`keel_rt::random::rndr`), with `fallback` for its failures.
    pub fn new(read: fn() -> Option<u64>, fallback: Seeded) -> Rndr {
        Rndr { read, fallback, fallbacks: 0 }
    }
}

impl Source for Rndr {
    fn fill(&mut self, out: &mut [u8]) {
        let (read, fallback, fallbacks) = (self.read, &mut self.fallback, &mut self.fallbacks);
        fill_words(out, || {
            read().unwrap_or_else(|| {
                *fallbacks += 1;
                fallback.next_u64()
            })
        });
    }
    fn hardware(&self) -> bool {
        true
    }
}

/// Fills `out` from 64-bit words of `next`.
fn fill_words(out: &mut [u8], mut next: impl FnMut() -> u64) {
    for chunk in out.chunks_mut(8) {
        let word = next().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

//! The core's seedable random generator (dropout masks, cutout squares).
//! xoshiro256++ seeded through splitmix64; `manual_seed` makes runs repeat.
//! Draws are sequential, so results do not depend on the thread count.

use std::sync::Mutex;

pub struct Xoshiro256 {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Xoshiro256 {
    pub fn seed(seed: u64) -> Self {
        let mut x = seed;
        Self {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1) with 24 random bits (exact in f32).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform integer in `0..n` (n > 0), by rejection (no modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

static RNG: Mutex<Option<Xoshiro256>> = Mutex::new(None);

fn time_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (std::process::id() as u64).rotate_left(32)
}

/// Seeds the global generator.
pub fn manual_seed(seed: u64) {
    let mut g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    *g = Some(Xoshiro256::seed(seed));
}

/// Runs `f` with the global generator (seeded from the clock on first use).
pub fn with_rng<R>(f: impl FnOnce(&mut Xoshiro256) -> R) -> R {
    let mut g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let rng = g.get_or_insert_with(|| Xoshiro256::seed(time_seed()));
    f(rng)
}

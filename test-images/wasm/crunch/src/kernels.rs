//! Compute kernels shared by the `crunch` workload and the native side of the throughput benchmark: deterministic work ending in one checksum.

// Every index and generated value is computed in u32/u64, never usize, so that wasm32 and
// x86_64 do the same arithmetic; floats are added in the same order on both.

/// The next value of a 32-bit linear congruential generator (Numerical Recipes').
fn lcg(x: u32) -> u32 {
    x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223)
}

/// FNV-1a folded over 64-bit words.
fn fnv(hash: u64, word: u64) -> u64 {
    (hash ^ word).wrapping_mul(0x0000_0100_0000_01b3)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// A 3×3 box blur over a `side`×`side` image of f32 (values 0..255 from an LCG), applied
/// `passes` times; the checksum folds the bits of every pixel of the result. A stencil
/// over linear memory: loads, stores and float adds.
pub fn blur(side: u32, passes: u32) -> u64 {
    let n = (side as usize) * (side as usize);
    let mut seed = 7u32;
    let mut image: Vec<f32> = (0..n)
        .map(|_| {
            seed = lcg(seed);
            (seed >> 24) as f32
        })
        .collect();
    let mut out = image.clone();
    let side = side as usize;
    for _ in 0..passes {
        for y in 1..side - 1 {
            for x in 1..side - 1 {
                let mut sum = 0.0f32;
                for row in [y - 1, y, y + 1] {
                    let at = row * side + x;
                    sum += image[at - 1] + image[at] + image[at + 1];
                }
                out[y * side + x] = sum / 9.0;
            }
        }
        std::mem::swap(&mut image, &mut out);
    }
    image
        .iter()
        .fold(FNV_OFFSET, |h, v| fnv(h, u64::from(v.to_bits())))
}

/// Sorts `count` u32 from an LCG (the standard library's unstable sort), then checks the
/// order; the checksum folds the sorted values. Branches, compares and swaps.
pub fn sort(count: u32) -> u64 {
    let mut seed = 11u32;
    let mut values: Vec<u32> = (0..count)
        .map(|_| {
            seed = lcg(seed);
            seed
        })
        .collect();
    values.sort_unstable();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    values.iter().fold(FNV_OFFSET, |h, &v| fnv(h, u64::from(v)))
}

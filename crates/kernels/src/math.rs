//! Scalar math written so that the compiler vectorises loops of it.

/// The logistic function, from [`exp`] of `-|x|` so that a loop of it vectorises.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    // 1 / (1 + e^-x) for x >= 0; e^x / (1 + e^x) below, which keeps its precision where
    // `1 - s` would not.
    if x >= 0.0 { s } else { e * s }
}

/// The hyperbolic tangent, from [`exp`] of `-2|x|` so that a loop of it vectorises; near 0,
/// where `1 - e` would cancel, its Taylor series.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let e = exp(-2.0 * a);
    let t = (1.0 - e) / (1.0 + e);
    let x2 = x * x;
    let series = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 - x2 * (17.0 / 315.0))));
    if a < 0.0625 {
        series
    } else if x >= 0.0 {
        t
    } else {
        -t
    }
}

/// `e^x` for `x <= 0` to about 2 ulp, written so the compiler vectorises a loop of it
/// (libm's `expf` is a call per element). Cephes' polynomial on `[-ln2/2, ln2/2]`. Rounding
/// to an integer adds and subtracts 1.5 * 2^23, and the integer is read from the sum's bits:
/// `round` and float-to-int casts are calls or branches on baseline x86-64 and stop the
/// vectoriser. The polynomial is in fused multiply-adds: one instruction each in
/// [`widest_vectors`]' variants, a third fewer instructions than separate products and sums
/// (Rust never fuses them itself), and the same rounding on every CPU.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    // The polynomial's coefficients after the first, highest degree first.
    const HORNER: [f32; 5] = [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = x.max(-87.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let p = HORNER
        .iter()
        .fold(1.987_569_1e-4f32, |p, &c| p.mul_add(r, c));
    let y = p.mul_add(r * r, r) + 1.0;
    // Wrapping arithmetic: the dev profile's overflow checks would add a branch.
    y * f32::from_bits((exponent.wrapping_add(127) << 23) as u32)
}

/// `e^x` in f64 for `x <= 0`, within about 1 ulp of libm's `exp` (0 below -708, where
/// libm's result is denormal or 0), written so the compiler vectorises a loop of it: the
/// same rounding trick as [`exp`], `x - n ln2` in two parts, and the Taylor series of degree
/// 13 on `[-ln2/2, ln2/2]` (its truncation error is below 1e-17).
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // fdlibm's split of ln 2: the high part's low bits are zero, so `n * LN2_HI` is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let clamped = x.max(-708.0);
    let shifted = clamped.mul_add(std::f64::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let exponent = (shifted.to_bits() as i64).wrapping_sub(ROUND.to_bits() as i64);
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, clamped));
    // 1/k! for k = 13 down to 2.
    let mut p: f64 = 1.0 / 6_227_020_800.0;
    for k in (2..13).rev() {
        p = p.mul_add(r, 1.0 / FACTORIALS[k]);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    let scaled = y * f64::from_bits((exponent.wrapping_add(1023) << 52) as u64);
    if x < -708.0 { 0.0 } else { scaled }
}

/// k! for k up to 12.
const FACTORIALS: [f64; 13] = [
    1.0,
    1.0,
    2.0,
    6.0,
    24.0,
    120.0,
    720.0,
    5_040.0,
    40_320.0,
    362_880.0,
    3_628_800.0,
    39_916_800.0,
    479_001_600.0,
];

/// Lanes of the row reductions: independent partial results the compiler keeps in one vector
/// register (a single running sum would have to be added in order, one element at a time).
const LANES: usize = 16;

/// Work whose loops should use the widest vector instructions the CPU has: see
/// [`widest_vectors`].
pub(crate) trait Vectorised {
    /// What the work returns.
    type Output;
    /// Does the work; implementations are `#[inline(always)]` so that they are compiled into
    /// each of [`widest_vectors`]'s variants.
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for AVX-512, or AVX2 with FMA, when the CPU has them (checked at run
/// time): the crate itself is built for baseline x86-64, whose 4-lane SSE is all the
/// vectoriser may use elsewhere.
pub(crate) fn widest_vectors<V: Vectorised>(work: V) -> V::Output {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<V: Vectorised>(work: V) -> V::Output {
            work.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<V: Vectorised>(work: V) -> V::Output {
            work.run()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the instructions the function is compiled for.
            return unsafe { avx512(work) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(work) };
        }
    }
    work.run()
}

/// The largest `f(a[i], b[i])` (NaNs ignored; minus infinity for none), in lanes the
/// compiler vectorises.
#[inline(always)]
pub(crate) fn largest(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut max = [f32::NEG_INFINITY; LANES];
    for (x, y) in ca.clone().zip(cb.clone()) {
        for l in 0..LANES {
            let v = f(x[l], y[l]);
            max[l] = if v > max[l] { v } else { max[l] };
        }
    }
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y));
    tail.chain(max)
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

/// `Σ a[i] b[i]`, in lanes the compiler vectorises.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut sum = [0.0f32; LANES];
    for (x, y) in ca.clone().zip(cb.clone()) {
        for l in 0..LANES {
            sum[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    sum.iter().sum::<f32>() + tail
}

/// Replaces `row` by `exp(row - max(row))` (a softmax but for the division) and returns the
/// maximum and the new row's sum, whose log plus the maximum is the log-sum-exp of the row.
#[inline(always)]
pub(crate) fn exp_in_place(row: &mut [f32]) -> (f32, f32) {
    let max = largest(row, row, |x, _| x);
    let mut lanes = row.chunks_exact_mut(LANES);
    let mut sum = [0.0f32; LANES];
    for c in lanes.by_ref() {
        for l in 0..LANES {
            c[l] = exp(c[l] - max);
            sum[l] += c[l];
        }
    }
    let mut tail = 0.0f32;
    for x in lanes.into_remainder() {
        *x = exp(*x - max);
        tail += *x;
    }
    (max, sum.iter().sum::<f32>() + tail)
}

/// The derivative of `f` at 0 by the fourth-order central difference with step `eps`: what
/// the hand-written backward passes are checked against.
#[cfg(test)]
pub(crate) fn central_difference(f: impl Fn(f32) -> f64, eps: f32) -> f64 {
    let near = f(eps) - f(-eps);
    let far = f(2.0 * eps) - f(-2.0 * eps);
    (8.0 * near - far) / (12.0 * f64::from(eps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_sigmoid_and_tanh_match_libm() {
        for i in -200_000..=200_000 {
            let x = i as f32 / 10_000.0;
            let (s, want) = (sigmoid(x), 1.0 / (1.0 + f64::from(-x).exp()));
            assert!(
                (f64::from(s) - want).abs() <= 4e-7 * want,
                "sigmoid({x}) = {s}, want {want}"
            );
            let (t, want) = (tanh(x), f64::from(x).tanh());
            assert!(
                (f64::from(t) - want).abs() <= 6e-7 * want.abs() + 1e-30,
                "tanh({x}) = {t}, want {want}"
            );
        }
    }

    #[test]
    fn the_vectorised_exp_matches_libm() {
        for i in 0..=100_000 {
            let x = -87.0 * i as f32 / 100_000.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 2e-7 * want,
                "exp({x}) = {got}, libm {want}"
            );
        }
    }
}

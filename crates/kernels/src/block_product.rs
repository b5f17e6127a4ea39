//! `out += Σ_c x[c] · column_c`: a vector times a matrix whose columns are read in blocks of
//! [`BLOCK`] consecutive outputs, the accumulators of a block held in vector registers while
//! every column adds to them. The weights are f32, or f16 converted as they are loaded. The
//! decoder runs its LSTM gates and its half-precision output layer through this.

use half::f16;

/// Outputs per block: four AVX-512 registers, or eight AVX2 ones.
pub const BLOCK: usize = 64;

/// Where a matrix's values lie: block `b`'s column `c` is the [`BLOCK`] values from
/// `b * block_stride + c * column_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strides {
    pub(crate) column: usize,
    pub(crate) block: usize,
}

/// A matrix element: f32, or an f16 held as its bits.
pub(crate) trait Weight: Copy {
    /// The value as f32.
    fn value(self) -> f32;
    /// 16 values from `p` as f32 lanes.
    ///
    /// # Safety
    /// 16 values from `p` are readable, and the CPU has AVX-512F.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
    /// 8 values from `p` as f32 lanes.
    ///
    /// # Safety
    /// 8 values from `p` are readable, and the CPU has AVX and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl Weight for f32 {
    fn value(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: the caller's promise.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx,f16c")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: the caller's promise.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
}

impl Weight for u16 {
    fn value(self) -> f32 {
        f16::from_bits(self).to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's promise.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx,f16c")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: the caller's promise.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

/// `out[b * BLOCK + j] += Σ_c x[c] · values[b * strides.block + c * strides.column + j]`
/// for every output; a last partial block is read as far as `out` goes.
pub(crate) fn accumulate<W: Weight>(values: &[W], strides: Strides, x: &[f32], out: &mut [f32]) {
    let full = out.len() / BLOCK;
    if let Some(last) = x.len().checked_sub(1) {
        // The furthest read of a block is its last column's end; later blocks read further.
        let end =
            |block: usize, width: usize| block * strides.block + last * strides.column + width;
        let tail = out.len() % BLOCK;
        assert!(
            full == 0 || end(full - 1, BLOCK) <= values.len(),
            "values cover the blocks"
        );
        assert!(
            tail == 0 || end(full, tail) <= values.len(),
            "values cover the last block"
        );
    }
    let (whole, tail) = out.split_at_mut(full * BLOCK);
    let mut done = false;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the assertions above keep every read in `values`.
            unsafe { x86::accumulate_avx512(values, strides, x, whole) };
            done = true;
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: as above, for AVX2, FMA and F16C.
            unsafe { x86::accumulate_avx2(values, strides, x, whole) };
            done = true;
        }
    }
    if !done {
        accumulate_portable(values, strides, x, whole, 0);
    }
    accumulate_portable(values, strides, x, tail, full);
}

/// [`accumulate`] for the blocks of `out`, the first being block `first`, on any CPU.
pub(crate) fn accumulate_portable<W: Weight>(
    values: &[W],
    strides: Strides,
    x: &[f32],
    out: &mut [f32],
    first: usize,
) {
    for (b, out) in out.chunks_mut(BLOCK).enumerate() {
        let base = (first + b) * strides.block;
        for (c, &xc) in x.iter().enumerate() {
            let column = &values[base + c * strides.column..][..out.len()];
            for (o, &w) in out.iter_mut().zip(column) {
                *o += w.value() * xc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{BLOCK, Strides, Weight};

    /// Defines `$name`, [`super::accumulate`] over whole blocks for one instruction set:
    /// its vector type and lane count, and its load, broadcast, FMA, add and store.
    macro_rules! blocks {
        ($name:ident, $features:literal, $vector:ty, $lanes:literal, $load:ident,
         $loadu:ident, $set1:ident, $fmadd:ident, $add:ident, $storeu:ident) => {
            /// [`super::accumulate`] over whole blocks with the lanes of one instruction set.
            ///
            /// # Safety
            /// Every block's every column lies in `values`.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name<W: Weight>(
                values: &[W],
                strides: Strides,
                x: &[f32],
                out: &mut [f32],
            ) {
                const LANES: usize = $lanes;
                for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
                    // SAFETY: `out` holds BLOCK values; the caller's promise covers `values`.
                    unsafe {
                        let o = out.as_mut_ptr();
                        // Two sets of accumulators, for even and odd columns: twice the
                        // independent FMAs in flight of one set.
                        let mut even: [$vector; BLOCK / LANES] =
                            std::array::from_fn(|j| $loadu(o.add(j * LANES)));
                        let mut odd: [$vector; BLOCK / LANES] = std::array::from_fn(|_| $set1(0.0));
                        let base = values.as_ptr().add(b * strides.block);
                        let add = |acc: &mut [$vector; BLOCK / LANES], c: usize, xc: f32| {
                            let xv = $set1(xc);
                            let column = base.add(c * strides.column);
                            for (j, acc) in acc.iter_mut().enumerate() {
                                *acc = $fmadd(W::$load(column.add(j * LANES)), xv, *acc);
                            }
                        };
                        let pairs = x.chunks_exact(2);
                        if let [xc] = pairs.remainder() {
                            add(&mut even, x.len() - 1, *xc);
                        }
                        for (p, pair) in pairs.enumerate() {
                            add(&mut even, 2 * p, pair[0]);
                            add(&mut odd, 2 * p + 1, pair[1]);
                        }
                        for (j, (e, d)) in even.iter().zip(&odd).enumerate() {
                            $storeu(o.add(j * LANES), $add(*e, *d));
                        }
                    }
                }
            }
        };
    }

    blocks!(
        accumulate_avx512,
        "avx512f",
        __m512,
        16,
        load16,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
    blocks!(
        accumulate_avx2,
        "avx2,fma,f16c",
        __m256,
        8,
        load8,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row-major `[in, width]` f32 weights (the LSTM gates' layout), with a partial last
    /// block, against the plain sum.
    #[test]
    fn row_major_weights_with_a_partial_block() {
        let (inputs, width) = (7, 200);
        let w: Vec<f32> = (0..inputs * width)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let x: Vec<f32> = (0..inputs).map(|i| i as f32 - 3.0).collect();
        let mut out = vec![1.0f32; width];
        let strides = Strides {
            column: width,
            block: BLOCK,
        };
        accumulate(&w, strides, &x, &mut out);
        for (j, o) in out.iter().enumerate() {
            let want: f32 = 1.0 + (0..inputs).map(|i| x[i] * w[i * width + j]).sum::<f32>();
            assert!((o - want).abs() < 1e-4, "{j}: {o} vs {want}");
        }
    }

    /// Every instruction set this CPU has gives the portable code's sums, for f32 and f16
    /// weights in the half-precision matrix's layout.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn every_instruction_set_matches_the_portable_code() {
        let (cols, blocks) = (24, 3);
        let w: Vec<f32> = (0..cols * blocks * BLOCK)
            .map(|i| (i as f32 * 0.11).cos())
            .collect();
        let halves: Vec<u16> = w.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
        let x: Vec<f32> = (0..cols).map(|c| (c as f32 * 0.7).sin()).collect();
        let strides = Strides {
            column: BLOCK,
            block: cols * BLOCK,
        };
        let check = |simd: &dyn Fn(&mut [f32], &mut [f32])| {
            let (mut wide, mut half) = (vec![0.5f32; blocks * BLOCK], vec![0.5f32; blocks * BLOCK]);
            simd(&mut wide, &mut half);
            let (mut want_wide, mut want_half) =
                (vec![0.5f32; wide.len()], vec![0.5f32; wide.len()]);
            accumulate_portable(&w, strides, &x, &mut want_wide, 0);
            accumulate_portable(&halves, strides, &x, &mut want_half, 0);
            for (got, want) in wide
                .iter()
                .chain(&half)
                .zip(want_wide.iter().chain(&want_half))
            {
                assert!((got - want).abs() < 1e-4, "{got} vs {want}");
            }
        };
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the blocks lie in the weights.
            check(&|wide, half| unsafe {
                x86::accumulate_avx512(&w, strides, &x, wide);
                x86::accumulate_avx512(&halves, strides, &x, half);
            });
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU has AVX2, FMA and F16C; the blocks lie in the weights.
            check(&|wide, half| unsafe {
                x86::accumulate_avx2(&w, strides, &x, wide);
                x86::accumulate_avx2(&halves, strides, &x, half);
            });
        }
    }
}

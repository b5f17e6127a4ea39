//! Matrix products for the fused operations: the system's OpenBLAS when it is installed
//! (`apt install libopenblas0`), loaded at run time so the build needs nothing beyond
//! crates.io, else the pure-Rust `gemm` crate that flex uses. [`select`] pins either. Only the
//! large products that run on every core at once go to OpenBLAS: the fused output layer and
//! the LSTM's shares multiply on each core's own thread with the `gemm` crate, and products
//! below [`SMALL`] stay with it too, so the textbook model's training step makes no OpenBLAS
//! call at all.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use gemm::Parallelism;
use serde::{Deserialize, Serialize};

type Sgemm = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    f32,
    *const f32,
    c_int,
    *const f32,
    c_int,
    f32,
    *mut f32,
    c_int,
);

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Why the system's OpenBLAS is not used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenblasRefused {
    /// No library could be loaded (the loader's message for each name tried).
    #[error("{}", .0.join("; "))]
    NotLoaded(Vec<String>),
    /// The library lacks `cblas_sgemm`.
    #[error("{library}: {error}")]
    NoSgemm {
        /// The library's file name.
        library: String,
        /// The loader's message.
        error: String,
    },
    /// A build with 64-bit integers: this program passes 32-bit ones.
    #[error("{library} is built with 64-bit integers ({config}); this program passes 32-bit ones")]
    WideIntegers {
        /// The library's file name.
        library: String,
        /// Its `openblas_get_config()`.
        config: String,
    },
    /// Its product of two small matrices differs from the `gemm` crate's.
    #[error("{library}: a test product disagrees with the gemm crate's: {theirs:?} vs {ours:?}")]
    Disagrees {
        /// The library's file name.
        library: String,
        /// Its product.
        theirs: Vec<f32>,
        /// The `gemm` crate's.
        ours: Vec<f32>,
    },
    /// Not a Unix system.
    #[error("OpenBLAS is loaded at run time on Unix only")]
    NotUnix,
}

/// OpenBLAS's `cblas_sgemm`, or why it is not used (looked up and checked once).
fn openblas() -> Result<Sgemm, &'static OpenblasRefused> {
    static LOADED: OnceLock<Result<Sgemm, OpenblasRefused>> = OnceLock::new();
    match LOADED.get_or_init(load_openblas) {
        Ok(sgemm) => Ok(*sgemm),
        Err(why) => Err(why),
    }
}

/// Loads the system's OpenBLAS and checks it: a build with 64-bit integers (which this
/// program would call with 32-bit ones) is refused, and so is one whose product of two small
/// matrices disagrees with the `gemm` crate's.
#[cfg(unix)]
fn load_openblas() -> Result<Sgemm, OpenblasRefused> {
    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlerror() -> *const c_char;
    }
    /// The dynamic loader's last error.
    fn last_error() -> String {
        // SAFETY: dlerror returns NULL or a NUL-terminated message valid until the next call.
        let message = unsafe { dlerror() };
        match message.is_null() {
            true => "unknown error".into(),
            // SAFETY: as above.
            false => unsafe { CStr::from_ptr(message) }
                .to_string_lossy()
                .into_owned(),
        }
    }
    const RTLD_NOW: c_int = 2;
    let mut failures = Vec::new();
    for name in [c"libopenblas.so.0", c"libopenblas.so"] {
        let shown = name.to_string_lossy();
        // SAFETY: dlopen/dlsym with NUL-terminated names; `cblas_sgemm` has the C signature
        // `Sgemm` and `openblas_get_config` returns a NUL-terminated string in every OpenBLAS
        // release.
        unsafe {
            let lib = dlopen(name.as_ptr(), RTLD_NOW);
            if lib.is_null() {
                failures.push(last_error());
                continue;
            }
            let f = dlsym(lib, c"cblas_sgemm".as_ptr());
            if f.is_null() {
                return Err(OpenblasRefused::NoSgemm {
                    library: shown.into_owned(),
                    error: last_error(),
                });
            }
            let config = dlsym(lib, c"openblas_get_config".as_ptr());
            if !config.is_null() {
                let get = std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> *const c_char>(
                    config,
                );
                let text = CStr::from_ptr(get()).to_string_lossy();
                check_integer_width(&shown, &text)?;
            }
            let sgemm = std::mem::transmute::<*mut c_void, Sgemm>(f);
            return agrees_with_gemm(&shown, sgemm).map(|()| sgemm);
        }
    }
    Err(OpenblasRefused::NotLoaded(failures))
}

/// Refuses an OpenBLAS whose build configuration (`openblas_get_config()`) says it takes
/// 64-bit integers: this program passes 32-bit ones.
fn check_integer_width(library: &str, config: &str) -> Result<(), OpenblasRefused> {
    match config.contains("USE64BITINT") {
        true => Err(OpenblasRefused::WideIntegers {
            library: library.to_owned(),
            config: config.to_owned(),
        }),
        false => Ok(()),
    }
}

#[cfg(not(unix))]
fn load_openblas() -> Result<Sgemm, OpenblasRefused> {
    Err(OpenblasRefused::NotUnix)
}

/// Whether `sgemm` (from `library`) multiplies two small matrices as the `gemm` crate does.
fn agrees_with_gemm(library: &str, sgemm: Sgemm) -> Result<(), OpenblasRefused> {
    let [m, n, k] = [3, 5, 4];
    let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
    let [mut theirs, mut ours] = [vec![0.5f32; m * n], vec![0.5f32; m * n]];
    let (a, b) = (Operand::rows(&a, k), Operand::rows(&b, n));
    product(Some(sgemm), &mut theirs, [m, n, k], a, b, true, false);
    product(None, &mut ours, [m, n, k], a, b, true, false);
    match theirs.iter().zip(&ours).all(|(x, y)| (x - y).abs() < 1e-4) {
        true => Ok(()),
        false => Err(OpenblasRefused::Disagrees {
            library: library.to_owned(),
            theirs,
            ours,
        }),
    }
}

/// Which library multiplies the fused operations' matrices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Matmul {
    /// The system's OpenBLAS when it is installed, else the built-in `gemm` crate.
    #[default]
    Auto,
    /// The system's OpenBLAS; an error where it is not installed.
    Openblas,
    /// The pure-Rust `gemm` crate, built in.
    Builtin,
}

/// A matrix-product library that was asked for and cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum MatmulError {
    /// `openblas` was asked for and the system's OpenBLAS could not be loaded or was refused.
    #[error(
        "matmul `openblas`: the system's OpenBLAS cannot be used ({0}); install it (e.g. `apt install libopenblas0`), or use `auto` or `builtin`"
    )]
    OpenblasUnusable(OpenblasRefused),
}

/// Whether products go through OpenBLAS (set by [`select`]; before it, when it is installed).
static USE_OPENBLAS: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = 2;

/// Makes `choice` the library of every later product in this process; says which it is
/// (with `auto`, also why the system's OpenBLAS is not used, when it is not).
pub fn select(choice: Matmul) -> Result<String, MatmulError> {
    let (openblas, why_not) = match (choice, openblas()) {
        (Matmul::Auto, Ok(_)) => (true, None),
        (Matmul::Auto, Err(why)) => (false, Some(why)),
        (Matmul::Openblas, Err(why)) => return Err(MatmulError::OpenblasUnusable(why.clone())),
        (Matmul::Openblas, Ok(_)) => (true, None),
        (Matmul::Builtin, _) => (false, None),
    };
    USE_OPENBLAS.store(u8::from(openblas), Ordering::Relaxed);
    Ok(match why_not {
        None => implementation().to_owned(),
        Some(why) => format!(
            "{} (the system's OpenBLAS is not used: {why})",
            implementation()
        ),
    })
}

/// The library [`matmul`] uses now: `"OpenBLAS"` or `"gemm"`.
pub fn implementation() -> &'static str {
    if sgemm().is_some() {
        "OpenBLAS"
    } else {
        "gemm"
    }
}

/// OpenBLAS's `cblas_sgemm` when products go through it.
fn sgemm() -> Option<Sgemm> {
    match USE_OPENBLAS.load(Ordering::Relaxed) {
        0 => None,
        _ => openblas().ok(),
    }
}

/// A matrix operand: row-major values with (row, column) strides, one of them 1, so a
/// transpose is only a swap of the strides.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    /// The values.
    pub values: &'a [f32],
    /// Distance between rows and between columns.
    pub strides: [usize; 2],
}

impl<'a> Operand<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            strides: [cols, 1],
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(values: &'a [f32], cols: usize) -> Self {
        Self {
            values,
            strides: [1, cols],
        }
    }
}

/// Products at most this large (m·n·k) skip OpenBLAS, whose packing and thread start-up cost
/// more than the arithmetic there (the passage-memorising model's one-sequence steps: 1 x 128 x
/// 512).
const SMALL: usize = 1 << 18;

/// Products at most this large run on the calling thread: sharing them costs more than it
/// saves (an LSTM step of the textbook model, 32 x 512 x 128).
const PARALLEL: usize = 1 << 22;

/// `dst[m, n] = (dst if accumulate) + a[m, k] · b[k, n]`, `dst` row-major.
pub fn matmul(dst: &mut [f32], dims: [usize; 3], a: Operand, b: Operand, accumulate: bool) {
    let size = dims.iter().product::<usize>();
    let sgemm = sgemm().filter(|_| size > SMALL);
    product(sgemm, dst, dims, a, b, accumulate, size > PARALLEL);
}

/// [`matmul`] on the calling thread alone, by the `gemm` crate: for callers that spread
/// their own blocks of work over the cores (OpenBLAS would start its threads for each block).
pub fn matmul_on_this_thread(
    dst: &mut [f32],
    dims: [usize; 3],
    a: Operand,
    b: Operand,
    accumulate: bool,
) {
    product(None, dst, dims, a, b, accumulate, false);
}

/// `dst[n, m] += (a[m, k] · b[k, n])^T`, `dst` row-major: the product written transposed, by
/// the `gemm` crate on every core, never OpenBLAS. Each element of the result is summed in
/// the same order whatever `n` is (above one), so a row of `dst` does not depend on the rows
/// beside it.
pub fn matmul_by_gemm_transposed(dst: &mut [f32], [m, n, k]: [usize; 3], a: Operand, b: Operand) {
    assert!(dst.len() >= m * n);
    assert!(a.values.len() >= m * k && b.values.len() >= k * n);
    // SAFETY: the asserts keep every element the dimensions and strides reach inside the
    // slices (the operands' strides describe matrices of those dimensions).
    unsafe { by_gemm(dst, [1, m as isize], [m, n, k], a, b, true, true) }
}

/// `dst = (dst if accumulate) + a · b` by the `gemm` crate, `dst`'s element (i, j) at
/// `i * dst_strides[0] + j * dst_strides[1]`, on every core when `parallel`.
///
/// # Safety
/// Every element the dimensions and strides reach must be inside the slices.
unsafe fn by_gemm(
    dst: &mut [f32],
    dst_strides: [isize; 2],
    [m, n, k]: [usize; 3],
    a: Operand,
    b: Operand,
    accumulate: bool,
    parallel: bool,
) {
    // SAFETY: as the caller promises; gemm takes (column, row) strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_strides[1],
            dst_strides[0],
            accumulate,
            a.values.as_ptr(),
            a.strides[1] as isize,
            a.strides[0] as isize,
            b.values.as_ptr(),
            b.strides[1] as isize,
            b.strides[0] as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            if parallel {
                Parallelism::Rayon(0)
            } else {
                Parallelism::None
            },
        );
    }
}

/// [`matmul`] through `sgemm`, or through the `gemm` crate when `None`, on every core when
/// `parallel`.
fn product(
    sgemm: Option<Sgemm>,
    dst: &mut [f32],
    [m, n, k]: [usize; 3],
    a: Operand,
    b: Operand,
    accumulate: bool,
    parallel: bool,
) {
    let reach = |o: Operand, r: usize, c: usize| {
        (r.max(1) - 1) * o.strides[0] + (c.max(1) - 1) * o.strides[1]
    };
    assert!(dst.len() >= m * n);
    assert!(a.values.len() > reach(a, m, k) && b.values.len() > reach(b, k, n));
    let beta = if accumulate { 1.0 } else { 0.0 };
    if let Some(sgemm) = sgemm {
        // A single row or column has both strides 1; the leading dimension must still be at
        // least the row's length.
        let layout = |o: Operand, rows: usize, cols: usize| match o.strides {
            [rs, 1] if rows == 1 || rs >= cols => (NO_TRANS, rs.max(cols).max(1)),
            [1, cs] => (TRANS, cs.max(rows).max(1)),
            s => panic!("matmul: an operand with strides {s:?} has no unit stride"),
        };
        let ((ta, lda), (tb, ldb)) = (layout(a, m, k), layout(b, k, n));
        let int = |x: usize| c_int::try_from(x).expect("matrix dimension fits a C int");
        // SAFETY: the asserts above keep every element the dimensions and leading
        // dimensions reach inside the slices.
        unsafe {
            sgemm(
                ROW_MAJOR,
                ta,
                tb,
                int(m),
                int(n),
                int(k),
                1.0,
                a.values.as_ptr(),
                int(lda),
                b.values.as_ptr(),
                int(ldb),
                beta,
                dst.as_mut_ptr(),
                int(n.max(1)),
            );
        }
        return;
    }
    // SAFETY: as above.
    unsafe { by_gemm(dst, [n as isize, 1], [m, n, k], a, b, accumulate, parallel) }
}

/// The transpose `[cols, rows]` of a row-major `[rows, cols]` matrix, in tiles that stay in
/// cache (a row at a time, the writes would stride through the whole result).
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let mut out = vec![0.0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let row = &values[r * cols..][c0..(c0 + TILE).min(cols)];
                for (c, &x) in (c0..).zip(row) {
                    out[c * rows + r] = x;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_64_bit_integer_openblas_is_refused() {
        // What Debian's libopenblas0 reports, and the same with the flag a 64-bit-integer
        // build adds.
        let debian = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64";
        assert!(check_integer_width("libopenblas.so.0", debian).is_ok());
        let wide = "OpenBLAS 0.3.21 USE64BITINT DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64";
        let e = check_integer_width("libopenblas.so.0", wide)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("libopenblas.so.0") && e.contains("64-bit integers"),
            "{e}"
        );
    }

    /// Both implementations, every combination of transposes, against a plain triple loop;
    /// one shape of several rows and single rows (whose strides are both 1), accumulating and
    /// not.
    #[test]
    fn openblas_and_gemm_agree_with_a_plain_loop() {
        for ([m, n, k], accumulate) in [([5, 7, 3], true), ([1, 37, 19], true), ([1, 9, 4], false)]
        {
            agree_with_a_plain_loop([m, n, k], accumulate);
        }
    }

    fn agree_with_a_plain_loop([m, n, k]: [usize; 3], accumulate: bool) {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
        let transpose = |v: &[f32], rows: usize, cols: usize| {
            (0..rows * cols)
                .map(|i| v[(i % rows) * cols + i / rows])
                .collect::<Vec<f32>>()
        };
        let (a_t, b_t) = (transpose(&a, m, k), transpose(&b, k, n));
        let start = if accumulate { 1.0 } else { 0.0 };
        let mut want = vec![start; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] += (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f32>();
            }
        }
        let implementations: Vec<Option<Sgemm>> = match openblas() {
            Ok(sgemm) => vec![Some(sgemm), None],
            Err(_) => vec![None],
        };
        for sgemm in implementations {
            let a_ops = [Operand::rows(&a, k), Operand::transposed(&a_t, m)];
            let b_ops = [Operand::rows(&b, n), Operand::transposed(&b_t, k)];
            for (x, y) in a_ops.iter().flat_map(|x| b_ops.iter().map(move |y| (x, y))) {
                let mut got = vec![1.0f32; m * n];
                product(sgemm, &mut got, [m, n, k], *x, *y, accumulate, false);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "{m}x{n}x{k}: {g} vs {w} (OpenBLAS: {})",
                        sgemm.is_some()
                    );
                }
            }
        }
    }
}

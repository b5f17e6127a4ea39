//! An LSTM layer as one operation with a hand-written backward, for the flex backend.
//!
//! Burn's `nn::Lstm` runs eight small matmuls, a dozen element-wise ops and a `slice_assign`
//! per time step, each recorded on the autodiff tape. Here the input projection of all time
//! steps is one matmul, each step is one `[B, H] x [H, 4H]` matmul plus one pass over the
//! gates, and the backward pass walks the steps in reverse by hand, ending with single
//! matmuls for the weight and input gradients (each of these per share of a large batch,
//! see `Shares`). The weights stay `nn::Lstm`'s own (the four
//! gates' transforms are concatenated on the fly), so checkpoints are unchanged and
//! `nn::Lstm` remains the reference implementation the tests compare against.
//!
//! The gate order in the concatenated weights is input, forget, cell (candidate), output.

use std::ops::Range;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::{GateController, Lstm, LstmState};
use burn::prelude::s;
use burn::tensor::Tensor;
use burn_flex::FlexTensor;
use rayon::prelude::*;

use crate::block_product::{BLOCK, Strides, accumulate};
use crate::cell::CellForward;
use crate::even;
use crate::math::{Vectorised, dot, tanh, widest_vectors};
use crate::matmul::{Operand, matmul, matmul_on_this_thread, transpose};
use crate::train::autodiff::{HandBackward, record};
use crate::train::flex_buffers::{floats, linear_bias, tensor};

/// The LSTM recurrence as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait LstmOps: Backend {
    /// Runs `x [B, T, E]` from `h0, c0 [B, H]` with `w_ih [E, 4H]`, `w_hh [H, 4H]` and
    /// `bias [4H]`; returns `[B, T + 1, H]`: the hidden state of every step, then the last
    /// cell state.
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// Runs `lstm` over `x [B, T, E]` from `state` as the fused operation; the same results as
/// `lstm.forward(x, state)` for a batch-first, forward-running LSTM with default activations,
/// a forget gate and no clipping.
pub fn forward(
    lstm: &Lstm,
    x: Tensor<3>,
    state: Option<LstmState<2>>,
) -> (Tensor<3>, LstmState<2>) {
    let [b, t, _] = x.dims();
    let hidden = lstm.d_hidden;
    let device = x.device();
    let (c0, h0) = state
        .unwrap_or_else(|| LstmState::initial([b, hidden], &device))
        .unpack();
    let (w_ih, w_hh, bias) = fused_weights(lstm);
    let out = <Dispatch as LstmOps>::lstm_sequence(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        bias.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
    );
    let out: Tensor<3> = Tensor::from_dispatch(out);
    let h_all = out.clone().slice(s![.., 0..t, ..]);
    let h_last = out.clone().slice(s![.., t - 1, ..]).squeeze_dim::<2>(1);
    let c_last = out.slice(s![.., t, ..]).squeeze_dim::<2>(1);
    (h_all, LstmState::new(c_last, h_last))
}

/// `lstm`'s four gates' weights side by side: `w_ih [E, 4H]`, `w_hh [H, 4H]` and the sum of
/// both transforms' biases `[4H]`, the gates in the order input, forget, cell, output.
pub fn fused_weights(lstm: &Lstm) -> (Tensor<2>, Tensor<2>, Tensor<1>) {
    let forget = lstm
        .forget_gate
        .as_ref()
        .expect("an LSTM with a forget gate");
    let gates = [&lstm.input_gate, forget, &lstm.cell_gate, &lstm.output_gate];
    let cat = |part: fn(&GateController) -> Tensor<2>| Tensor::cat(gates.map(part).to_vec(), 1);
    let w_ih = cat(|g| g.input_transform.weight.val());
    let w_hh = cat(|g| g.hidden_transform.weight.val());
    let bias = Tensor::cat(
        gates
            .map(|g| linear_bias(&g.input_transform) + linear_bias(&g.hidden_transform))
            .to_vec(),
        0,
    );
    (w_ih, w_hh, bias)
}

/// What the forward pass keeps for the backward pass, each share of the batch's steps
/// together (see [`Shares`]).
#[derive(Debug, Clone)]
pub struct LstmActivations {
    dims: [usize; 4],
    /// Activated gates, `T` steps of `4H`.
    gates: Vec<f32>,
    /// Hidden states, `T + 1` steps of `H`, `h0` first.
    h: Vec<f32>,
    /// Cell states, `T + 1` steps of `H`, `c0` first.
    c: Vec<f32>,
    /// The input, `T` steps of `E`.
    x: Vec<f32>,
}

/// The kernels a backend supplies for the fused LSTM.
pub trait LstmKernels: Backend {
    /// The forward pass: the packed output of [`LstmOps::lstm_sequence`] and what backward needs.
    fn lstm_forward(
        x: &FloatTensor<Self>,
        w_ih: &FloatTensor<Self>,
        w_hh: &FloatTensor<Self>,
        bias: &FloatTensor<Self>,
        h0: &FloatTensor<Self>,
        c0: &FloatTensor<Self>,
    ) -> (FloatTensor<Self>, LstmActivations);
    /// Gradients of x, w_ih, w_hh, bias, h0 and c0 from the packed output's gradient.
    fn lstm_backward(
        saved: &LstmActivations,
        w_ih: &FloatTensor<Self>,
        w_hh: &FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 6];
}

/// Batches up to this size run the per-step recurrent products row by row through
/// [`accumulate`], which reads the weights where they lie; larger ones through [`matmul`],
/// whose packing of the weights pays off over many rows.
const ROW_BY_ROW: usize = 4;

/// A matrix product: [`matmul`], or [`matmul_on_this_thread`] where each core already runs a
/// share of the work.
type Product = fn(&mut [f32], [usize; 3], Operand, Operand, bool);

/// `out [B, n] += rows [B, k] · weights [k, n]` (row-major), for one forward step's
/// recurrent product.
fn step_product(
    out: &mut [f32],
    rows: &[f32],
    weights: &[f32],
    [b, n, k]: [usize; 3],
    product: Product,
) {
    if b > ROW_BY_ROW {
        let (rows, weights) = (Operand::rows(rows, k), Operand::rows(weights, n));
        return product(out, [b, n, k], rows, weights, true);
    }
    let strides = Strides {
        column: n,
        block: BLOCK,
    };
    for (out, row) in out.chunks_exact_mut(n).zip(rows.chunks_exact(k)) {
        accumulate(weights, strides, row, out);
    }
}

/// Fewest rows per share of the batch: each share's recurrence runs on a core of its own.
/// The number of shares follows from the batch size alone, so the sums come out the same on
/// every machine.
const SHARE_ROWS: usize = 16;

/// The batch's rows cut into shares whose recurrences run in parallel (sequences are
/// independent), and the layout of the buffers that hold each share's steps together:
/// `[share][step][row of the share][width]`. With one share that is step-major `[T, B, width]`.
struct Shares {
    /// Each share's rows of the batch.
    rows: Vec<Range<usize>>,
}

impl Shares {
    fn new(batch: usize) -> Self {
        let n = (batch / SHARE_ROWS).max(1);
        Self {
            rows: even::ranges(batch, n).collect(),
        }
    }

    fn count(&self) -> usize {
        self.rows.len()
    }

    /// Each share's number of rows.
    fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.rows.iter().map(|r| r.len())
    }

    /// The buffer row of batch row `row` at `step`, in a buffer of `steps` steps per share.
    fn at(&self, step: usize, row: usize, steps: usize) -> usize {
        let share = &self.rows[self.rows.partition_point(|r| r.end <= row)];
        let (first, rows) = (share.start, share.len());
        first * steps + step * rows + row - first
    }

    /// A buffer of `steps` steps of `width` values per row, cut into the shares' parts.
    fn split<'a>(&self, mut buffer: &'a [f32], steps: usize, width: usize) -> Vec<&'a [f32]> {
        self.sizes()
            .map(|rows| {
                let (part, rest) = buffer.split_at(rows * steps * width);
                buffer = rest;
                part
            })
            .collect()
    }

    /// [`Shares::split`] for writing.
    fn split_mut<'a>(
        &self,
        mut buffer: &'a mut [f32],
        steps: usize,
        width: usize,
    ) -> Vec<&'a mut [f32]> {
        self.sizes()
            .map(|rows| {
                let (part, rest) = std::mem::take(&mut buffer).split_at_mut(rows * steps * width);
                buffer = rest;
                part
            })
            .collect()
    }

    /// The matrix product for work that runs once per share.
    fn product(&self) -> Product {
        match self.count() {
            1 => matmul,
            _ => matmul_on_this_thread,
        }
    }
}

/// Runs `run` on each share's part: on the calling thread for one share, else in parallel;
/// the results in the shares' order.
fn each_share<P: Send, R: Send>(parts: Vec<P>, run: impl Fn(P) -> R + Sync + Send) -> Vec<R> {
    match parts.len() {
        1 => parts.into_iter().map(run).collect(),
        _ => parts.into_par_iter().map(run).collect(),
    }
}

/// One share's part of the forward pass: from the input `x [T, rows, E]`, `gates
/// [T, rows, 4H]` receive the input projections and become the activations; `h` and `c`
/// `[T + 1, rows, H]` hold the starting states and receive every step's.
struct ForwardShare<'a> {
    x: &'a [f32],
    gates: &'a mut [f32],
    h: &'a mut [f32],
    c: &'a mut [f32],
    rows: usize,
}

/// The weights of a forward pass, row-major: `w_ih [E, 4H]`, `w_hh [H, 4H]`, `bias [4H]`.
struct ForwardWeights<'a> {
    w_ih: &'a [f32],
    w_hh: &'a [f32],
    bias: &'a [f32],
}

impl ForwardShare<'_> {
    /// The input projection of every step at once, bias included, then the recurrence over
    /// every step.
    fn run(self, weights: &ForwardWeights, product: Product) {
        let g4 = weights.bias.len();
        let (rows, hd, e) = (self.rows, g4 / 4, weights.w_ih.len() / g4);
        self.gates
            .chunks_exact_mut(g4)
            .for_each(|row| row.copy_from_slice(weights.bias));
        let (x, w_ih) = (Operand::rows(self.x, e), Operand::rows(weights.w_ih, g4));
        product(self.gates, [self.x.len() / e, g4, e], x, w_ih, true);
        let w_hh = weights.w_hh;
        for (ti, step) in self.gates.chunks_exact_mut(rows * g4).enumerate() {
            let (h_prev, h_next) =
                self.h[ti * rows * hd..(ti + 2) * rows * hd].split_at_mut(rows * hd);
            step_product(step, h_prev, w_hh, [rows, g4, hd], product);
            let (c_prev, c_next) =
                self.c[ti * rows * hd..(ti + 2) * rows * hd].split_at_mut(rows * hd);
            widest_vectors(CellForward {
                gates: step,
                c_prev,
                c_next,
                h_next,
                hd,
            });
        }
    }
}

/// One share's part of the backward pass: from the `[T, rows, 4H]` activations, the
/// `[T + 1, rows, H]` hidden and cell states, the input `x [T, rows, E]` and the output's
/// gradient `[rows, T + 1, H]`, the gates' gradients `[T, rows, 4H]`, with `dh` and `dc`
/// `[rows, H]` carried from the last step to the first, then the input's gradient `dx
/// [T, rows, E]`.
struct BackwardShare<'a> {
    gates: &'a [f32],
    h: &'a [f32],
    c: &'a [f32],
    x: &'a [f32],
    grad: &'a [f32],
    d_gates: &'a mut [f32],
    dh: &'a mut [f32],
    dc: &'a mut [f32],
    dx: &'a mut [f32],
    rows: usize,
}

/// The weights of a backward pass: `w_hh [H, 4H]` row-major, w_hhᵀ row-major where the
/// recurrent products use it (else they take dot products with `w_hh`'s rows), and w_ihᵀ
/// `[4H, E]` row-major.
struct BackwardWeights<'a> {
    w_hh: &'a [f32],
    w_hh_t: Option<&'a [f32]>,
    w_ih_t: &'a [f32],
}

impl BackwardShare<'_> {
    /// The recurrence over every step in reverse, then the input's gradient and this share's
    /// part of the gradients of w_ih, w_hh and the bias, over all its steps at once.
    fn run(self, weights: &BackwardWeights, product: Product) -> [Vec<f32>; 3] {
        let (rows, hd) = (self.rows, self.dh.len() / self.rows);
        let g4 = 4 * hd;
        let e = weights.w_ih_t.len() / g4;
        let t = self.d_gates.len() / (rows * g4);
        let mut scratch = vec![0.0f32; 2 * hd];
        for ti in (0..t).rev() {
            let step = &mut self.d_gates[ti * rows * g4..(ti + 1) * rows * g4];
            widest_vectors(CellBackward {
                gates: &self.gates[ti * rows * g4..(ti + 1) * rows * g4],
                d_gates: step,
                c_prev: &self.c[ti * rows * hd..(ti + 1) * rows * hd],
                c_next: &self.c[(ti + 1) * rows * hd..(ti + 2) * rows * hd],
                dh: self.dh,
                dc: self.dc,
                grad: self.grad,
                step: ti,
                steps: t,
                hd,
                scratch: &mut scratch,
            });
            // dh for the step before: dG · w_hhᵀ.
            match weights.w_hh_t {
                Some(w_hh_t) => {
                    let (d_m, w_hh_t) = (Operand::rows(step, g4), Operand::rows(w_hh_t, hd));
                    product(self.dh, [rows, hd, g4], d_m, w_hh_t, false);
                }
                None => widest_vectors(RowDots {
                    out: self.dh,
                    rows: step,
                    weights: weights.w_hh,
                    k: g4,
                }),
            }
        }
        let d_gates = Operand::rows(self.d_gates, g4);
        let (w_ih_t, n) = (Operand::rows(weights.w_ih_t, e), t * rows);
        product(self.dx, [n, e, g4], d_gates, w_ih_t, false);
        // inputᵀ · dG for an input of `width` features per row; the hidden states' last step
        // feeds no gate.
        let weight_grad = |input: &[f32], width: usize| {
            let mut dw = vec![0.0f32; width * g4];
            let input_t = Operand::transposed(&input[..n * width], width);
            product(&mut dw, [width, g4, n], input_t, d_gates, false);
            dw
        };
        let mut db = vec![0.0f32; g4];
        for row in self.d_gates.chunks_exact(g4) {
            db.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        [weight_grad(self.x, e), weight_grad(self.h, hd), db]
    }
}

/// `out [B, n] = rows [B, k] · weightsᵀ` for row-major `weights [n, k]`: each output a dot
/// product of a row with a row of the weights.
struct RowDots<'a> {
    out: &'a mut [f32],
    rows: &'a [f32],
    weights: &'a [f32],
    k: usize,
}

impl Vectorised for RowDots<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let n = self.weights.len() / self.k;
        let rows = self
            .out
            .chunks_exact_mut(n)
            .zip(self.rows.chunks_exact(self.k));
        for (out, row) in rows {
            for (o, w) in out.iter_mut().zip(self.weights.chunks_exact(self.k)) {
                *o = dot(row, w);
            }
        }
    }
}

/// One step of the cell's backward pass for every sequence: from the step's activations, the
/// cell states around it and the gradients flowing in (`dh`, `dc`, and the output's at this
/// step), the gradients of the gates' pre-activations; `dc` becomes the previous step's.
struct CellBackward<'a> {
    /// `[B, 4H]` activations and their gradients.
    gates: &'a [f32],
    d_gates: &'a mut [f32],
    /// `[B, H]`: the cell state before and after the step.
    c_prev: &'a [f32],
    c_next: &'a [f32],
    dh: &'a [f32],
    dc: &'a mut [f32],
    /// The output's gradient `[B, steps + 1, H]`, and this step.
    grad: &'a [f32],
    step: usize,
    steps: usize,
    hd: usize,
    /// `[2H]` of room, reused from step to step.
    scratch: &'a mut [f32],
}

impl Vectorised for CellBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let hd = self.hd;
        // tanh of the new cell state, and the hidden state's whole gradient.
        let (tc, dh_all) = self.scratch.split_at_mut(hd);
        let rows = self
            .gates
            .chunks_exact(4 * hd)
            .zip(self.d_gates.chunks_exact_mut(4 * hd));
        let states = self
            .c_prev
            .chunks_exact(hd)
            .zip(self.c_next.chunks_exact(hd));
        let flows = self.dh.chunks_exact(hd).zip(self.dc.chunks_exact_mut(hd));
        // Short loops over few slices each, as in the forward pass.
        for (bi, ((rows, states), flows)) in rows.zip(states).zip(flows).enumerate() {
            let ((act, d), (c_prev, c_next), (dh, dc)) = (rows, states, flows);
            let out = &self.grad[(bi * (self.steps + 1) + self.step) * hd..][..hd];
            let (i, rest) = act.split_at(hd);
            let (f, rest) = rest.split_at(hd);
            let (g, o) = rest.split_at(hd);
            let (di, rest) = d.split_at_mut(hd);
            let (df, rest) = rest.split_at_mut(hd);
            let (dg, d_out) = rest.split_at_mut(hd);
            tc.iter_mut().zip(c_next).for_each(|(t, c)| *t = tanh(*c));
            for ((s, dh), out) in dh_all.iter_mut().zip(dh).zip(out) {
                *s = dh + out;
            }
            for (((d, dh), t), o) in d_out.iter_mut().zip(&*dh_all).zip(&*tc).zip(o) {
                *d = dh * t * o * (1.0 - o);
            }
            for (((dc, dh), t), o) in dc.iter_mut().zip(&*dh_all).zip(&*tc).zip(o) {
                *dc += dh * o * (1.0 - t * t);
            }
            for (((d, dc), g), i) in di.iter_mut().zip(dc.iter()).zip(g).zip(i) {
                *d = dc * g * i * (1.0 - i);
            }
            for (((d, dc), c), f) in df.iter_mut().zip(dc.iter()).zip(c_prev).zip(f) {
                *d = dc * c * f * (1.0 - f);
            }
            for (((d, dc), i), g) in dg.iter_mut().zip(dc.iter()).zip(i).zip(g) {
                *d = dc * i * (1.0 - g * g);
            }
            dc.iter_mut().zip(f).for_each(|(dc, f)| *dc *= f);
        }
    }
}

impl LstmKernels for Flex {
    fn lstm_forward(
        x: &FlexTensor,
        w_ih: &FlexTensor,
        w_hh: &FlexTensor,
        bias: &FlexTensor,
        h0: &FlexTensor,
        c0: &FlexTensor,
    ) -> (FlexTensor, LstmActivations) {
        let [b, t, e] = x.layout().shape().dims::<3>();
        let hd = h0.layout().shape().dims::<2>()[1];
        let g4 = 4 * hd;
        let (w_ih, w_hh, bias) = (floats(w_ih), floats(w_hh), floats(bias));
        let shares = Shares::new(b);
        // The input in the shares' layout, so each step's rows are contiguous.
        let x_bt = floats(x);
        let mut xs = vec![0.0f32; t * b * e];
        for bi in 0..b {
            for ti in 0..t {
                xs[shares.at(ti, bi, t) * e..][..e]
                    .copy_from_slice(&x_bt[(bi * t + ti) * e..][..e]);
            }
        }
        let mut gates = vec![0.0f32; t * b * g4];
        let mut h = vec![0.0f32; (t + 1) * b * hd];
        let mut c = vec![0.0f32; (t + 1) * b * hd];
        let (h0, c0) = (floats(h0), floats(c0));
        for bi in 0..b {
            let at = shares.at(0, bi, t + 1) * hd;
            h[at..][..hd].copy_from_slice(&h0[bi * hd..][..hd]);
            c[at..][..hd].copy_from_slice(&c0[bi * hd..][..hd]);
        }
        let product = shares.product();
        let parts = shares
            .split(&xs, t, e)
            .into_iter()
            .zip(shares.split_mut(&mut gates, t, g4))
            .zip(shares.split_mut(&mut h, t + 1, hd))
            .zip(shares.split_mut(&mut c, t + 1, hd))
            .zip(shares.sizes())
            .map(|((((x, gates), h), c), rows)| ForwardShare {
                x,
                gates,
                h,
                c,
                rows,
            });
        let weights = ForwardWeights {
            w_ih: &w_ih,
            w_hh: &w_hh,
            bias: &bias,
        };
        each_share(parts.collect(), |share| share.run(&weights, product));
        // Packed output [B, T + 1, H]: every step's h, then the last c.
        let mut out = vec![0.0f32; b * (t + 1) * hd];
        for bi in 0..b {
            for ti in 0..t {
                out[(bi * (t + 1) + ti) * hd..][..hd]
                    .copy_from_slice(&h[shares.at(ti + 1, bi, t + 1) * hd..][..hd]);
            }
            out[(bi * (t + 1) + t) * hd..][..hd]
                .copy_from_slice(&c[shares.at(t, bi, t + 1) * hd..][..hd]);
        }
        let saved = LstmActivations {
            dims: [b, t, e, hd],
            gates,
            h,
            c,
            x: xs,
        };
        (tensor(out, &[b, t + 1, hd]), saved)
    }

    fn lstm_backward(
        saved: &LstmActivations,
        w_ih: &FlexTensor,
        w_hh: &FlexTensor,
        grad: FlexTensor,
    ) -> [FlexTensor; 6] {
        let [b, t, e, hd] = saved.dims;
        let g4 = 4 * hd;
        let (w_ih, w_hh) = (floats(w_ih), floats(w_hh));
        let grad = floats(&grad);
        let (gates, h, c) = (&saved.gates, &saved.h, &saved.c);
        let shares = Shares::new(b);
        let mut d_gates = vec![0.0f32; t * b * g4];
        let mut dh = vec![0.0f32; b * hd];
        let mut dc = vec![0.0f32; b * hd];
        for bi in 0..b {
            dc[bi * hd..][..hd].copy_from_slice(&grad[(bi * (t + 1) + t) * hd..][..hd]);
        }
        // w_hhᵀ row-major for a large batch: each step's product then reads it as the product
        // library packs fastest (a transposed operand costs it about twice the time at these
        // sizes). A small batch takes dot products with w_hh's rows as they lie.
        let w_hh_t = (b / shares.count() > ROW_BY_ROW).then(|| transpose(&w_hh, hd, g4));
        let w_ih_t = transpose(&w_ih, e, g4);
        let weights = BackwardWeights {
            w_hh: &w_hh,
            w_hh_t: w_hh_t.as_deref(),
            w_ih_t: &w_ih_t,
        };
        let mut dxs = vec![0.0f32; t * b * e];
        let kept = shares
            .split(gates, t, g4)
            .into_iter()
            .zip(shares.split(h, t + 1, hd))
            .zip(shares.split(c, t + 1, hd))
            .zip(shares.split(&saved.x, t, e))
            .zip(shares.split(&grad, t + 1, hd));
        let written = shares
            .split_mut(&mut d_gates, t, g4)
            .into_iter()
            .zip(shares.split_mut(&mut dh, 1, hd))
            .zip(shares.split_mut(&mut dc, 1, hd))
            .zip(shares.split_mut(&mut dxs, t, e));
        let parts = kept.zip(written).zip(shares.sizes()).map(
            |((((((gates, h), c), x), grad), (((d_gates, dh), dc), dx)), rows)| BackwardShare {
                gates,
                h,
                c,
                x,
                grad,
                d_gates,
                dh,
                dc,
                dx,
                rows,
            },
        );
        let product = shares.product();
        // Each share's weight gradients, added in the shares' order.
        let mut sums =
            each_share(parts.collect(), |share| share.run(&weights, product)).into_iter();
        let [mut dw_ih, mut dw_hh, mut db] = sums.next().expect("one share at least");
        for share in sums {
            for (sum, part) in [&mut dw_ih, &mut dw_hh, &mut db].into_iter().zip(share) {
                sum.iter_mut().zip(part).for_each(|(s, x)| *s += x);
            }
        }
        let mut dx = vec![0.0f32; b * t * e];
        for bi in 0..b {
            for ti in 0..t {
                dx[(bi * t + ti) * e..][..e].copy_from_slice(&dxs[shares.at(ti, bi, t) * e..][..e]);
            }
        }
        [
            tensor(dx, &[b, t, e]),
            tensor(dw_ih, &[e, g4]),
            tensor(dw_hh, &[hd, g4]),
            tensor(db, &[g4]),
            tensor(dh, &[b, hd]),
            tensor(dc, &[b, hd]),
        ]
    }
}

impl LstmOps for Flex {
    fn lstm_sequence(
        x: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        bias: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
    ) -> FlexTensor {
        Self::lstm_forward(&x, &w_ih, &w_hh, &bias, &h0, &c0).0
    }
}

/// The LSTM's backward pass on the tape.
#[derive(Debug)]
struct LstmSequence;

impl<B: Backend + LstmKernels> HandBackward<B, 6> for LstmSequence {
    type State = (LstmActivations, FloatTensor<B>, FloatTensor<B>);

    fn gradients((saved, w_ih, w_hh): Self::State, grad: FloatTensor<B>) -> [FloatTensor<B>; 6] {
        B::lstm_backward(&saved, &w_ih, &w_hh, grad)
    }
}

impl<B: Backend + LstmKernels, C: CheckpointStrategy> LstmOps for Autodiff<B, C> {
    fn lstm_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        record::<B, C, LstmSequence, 6>(
            [x, w_ih, w_hh, bias, h0, c0],
            |[x, w_ih, w_hh, bias, h0, c0], _| {
                let (out, saved) = B::lstm_forward(&x, &w_ih, &w_hh, &bias, &h0, &c0);
                (out, (saved, w_ih, w_hh))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::central_difference;
    use crate::train::flex_buffers::values;
    use burn::module::Module;
    use burn::nn::LstmConfig;
    use burn::tensor::{Device, Distribution, TensorData};

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * y.abs().max(1.0),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// An LSTM, an input and a starting state with every value non-trivial.
    fn setup(device: &Device, [b, t, e, h]: [usize; 4]) -> (Lstm, Tensor<3>, LstmState<2>) {
        device.seed(21);
        let lstm = LstmConfig::new(e, h, true).init(device);
        let x = Tensor::<3>::random([b, t, e], Distribution::Normal(0.0, 1.0), device);
        let state = LstmState::new(
            Tensor::random([b, h], Distribution::Normal(0.0, 0.5), device),
            Tensor::random([b, h], Distribution::Normal(0.0, 0.5), device),
        );
        (lstm, x, state)
    }

    /// A scalar of everything the layer returns, weighted so every output matters.
    fn objective(h: Tensor<3>, state: LstmState<2>) -> Tensor<1> {
        let w = h.clone().sin();
        (h * w).sum() + state.cell.sum() * 0.3 + state.hidden.sum() * 0.7
    }

    /// For a batch small enough for the row-by-row recurrent products, one large enough for
    /// the matrix product library, and one cut into two unequal shares that run in parallel.
    #[test]
    fn forward_and_gradients_match_nn_lstm() {
        for batch in [3, ROW_BY_ROW + 2, 2 * SHARE_ROWS + 1] {
            forward_and_gradients_match_nn_lstm_for(batch);
        }
    }

    fn forward_and_gradients_match_nn_lstm_for(batch: usize) {
        let device = Device::flex().autodiff();
        let (lstm, x, state) = setup(&device, [batch, 7, 5, 6]);
        let run = |fused: bool| {
            let x = x.clone().require_grad();
            let (h, s) = match fused {
                true => forward(&lstm, x.clone(), Some(state.clone())),
                false => lstm.forward(x.clone(), Some(state.clone())),
            };
            let outputs = [
                values(h.clone()),
                values(s.cell.clone()),
                values(s.hidden.clone()),
            ];
            let grads = objective(h, s).backward();
            let mut all = vec![values(x.grad(&grads).unwrap())];
            let gate = &lstm.output_gate;
            all.push(values(gate.input_transform.weight.grad(&grads).unwrap()));
            all.push(values(gate.hidden_transform.weight.grad(&grads).unwrap()));
            let bias = lstm
                .forget_gate
                .as_ref()
                .unwrap()
                .hidden_transform
                .bias
                .as_ref();
            all.push(values(bias.unwrap().grad(&grads).unwrap()));
            all.push(values(
                lstm.cell_gate.input_transform.weight.grad(&grads).unwrap(),
            ));
            (outputs, all)
        };
        let (fused_out, fused_grads) = run(true);
        let (stock_out, stock_grads) = run(false);
        for (k, (a, b)) in fused_out.iter().zip(&stock_out).enumerate() {
            close(a, b, 1e-5, &format!("output {k}"));
        }
        for (k, (a, b)) in fused_grads.iter().zip(&stock_grads).enumerate() {
            close(a, b, 1e-4, &format!("gradient {k}"));
        }
        assert_eq!(lstm.num_params(), 4 * (5 * 6 + 6 * 6 + 2 * 6));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let device = Device::flex().autodiff();
        let (lstm, x, state) = setup(&device, [2, 4, 3, 2]);
        let x = x.require_grad();
        let (h, s) = forward(&lstm, x.clone(), Some(state.clone()));
        let analytic = values(x.grad(&objective(h, s).backward()).unwrap());
        let inner = lstm.valid();
        let base = values(x.clone().inner());
        let at = |p: Vec<f32>| -> f64 {
            let x = Tensor::from_data(TensorData::new(p, [2, 4, 3]), &Device::flex());
            let state = LstmState::new(state.cell.clone().inner(), state.hidden.clone().inner());
            let (h, s) = forward(&inner, x, Some(state));
            f64::from(objective(h, s).into_scalar::<f32>())
        };
        let eps = 1e-2f32;
        for i in 0..base.len() {
            let shifted = |d: f32| {
                let mut p = base.clone();
                p[i] += d;
                at(p)
            };
            let numeric = central_difference(shifted, eps);
            let a = f64::from(analytic[i]);
            // f32 rounding of the objective (~1e-6) through the quotient: ~1e-4 of noise.
            assert!(
                (numeric - a).abs() <= 1e-3 * a.abs().max(0.1),
                "x[{i}]: analytic {a}, finite difference {numeric}"
            );
        }
    }
}

//! One sequence, one token at a time, on the CPU: an embedding, a stack of LSTM layers and
//! the output layer, on plain slices with no tensor or operation overhead. The output layer,
//! by far the most bytes a token reads, is a [`HalfMatrix`] whose blocks are split between
//! the caller's thread and helper threads that wait for each token, so each core reads the
//! same share from its own cache every time.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::block_product::{BLOCK, Strides, accumulate};
use crate::cell::CellForward;
use crate::decode::bounded::Bounds;
use crate::decode::half_matrix::{HalfMatrix, Part};
use crate::even;
use crate::math::widest_vectors;
use crate::matmul::{Operand, matmul, matmul_by_gemm_transposed, transpose};

/// One LSTM layer's weights: `input [d_in, 4H]`, `hidden [H, 4H]` and `bias [4H]`, the gates
/// in the order input, forget, cell, output (the fused layer's layout).
#[derive(Debug, Clone)]
pub struct LstmWeights {
    /// Input-to-gates weights, row-major `[d_in, 4H]`.
    pub input: Vec<f32>,
    /// Hidden-to-gates weights, row-major `[H, 4H]`.
    pub hidden: Vec<f32>,
    /// Both transforms' biases added, `[4H]`.
    pub bias: Vec<f32>,
}

/// A model's weights prepared for decoding one token at a time.
#[derive(Debug)]
pub struct LstmDecoder {
    embedding: Vec<f32>,
    embedding_dim: usize,
    /// The first layer's input projection of every token `[V, 4H]`, where it fits in
    /// [`TABLE_BYTES`]: a token then costs one row's read instead of a product.
    inputs: Option<Vec<f32>>,
    layers: Vec<LstmWeights>,
    hidden_size: usize,
    output: HalfMatrix,
    /// The output layer in full precision, `[H, V]` row-major, and its bias: the batched
    /// product of [`LstmDecoder::logits_of`].
    exact_output: Vec<f32>,
    exact_bias: Vec<f32>,
    threads: usize,
}

/// Bytes of output weights (per part) below which a helper thread costs more than it saves.
const BYTES_PER_THREAD: usize = 512 * 1024;

/// The largest input projection table kept: 64 MiB (the textbook model's is 20 MB).
const TABLE_BYTES: usize = 64 << 20;

impl LstmDecoder {
    /// A decoder for `embedding [V, E]`, `layers` and the output layer `output [H, V]` (as
    /// Burn's `Linear` stores it) with `output_bias [V]`, using up to `threads` threads.
    pub fn new(
        embedding: Vec<f32>,
        layers: Vec<LstmWeights>,
        output_weights: &[f32],
        output_bias: &[f32],
        threads: usize,
    ) -> Self {
        let vocab = output_bias.len();
        let hidden_size = output_weights.len() / vocab.max(1);
        let embedding_dim = embedding.len() / vocab.max(1);
        let rows = transpose(output_weights, hidden_size, vocab);
        let output = HalfMatrix::new(&rows, output_bias, hidden_size);
        let width = 4 * hidden_size;
        let inputs = (vocab * width * 4 <= TABLE_BYTES)
            .then(|| layers.first())
            .flatten()
            .map(|first| {
                let mut table = vec![0.0f32; vocab * width];
                let (e, w) = (
                    Operand::rows(&embedding, embedding_dim),
                    Operand::rows(&first.input, width),
                );
                matmul(&mut table, [vocab, width, embedding_dim], e, w, false);
                table
            });
        let bytes = vocab * hidden_size * 2;
        let threads = threads
            .min(bytes.div_ceil(BYTES_PER_THREAD))
            .min(output.blocks())
            .max(1);
        Self {
            embedding,
            embedding_dim,
            inputs,
            layers,
            hidden_size,
            output,
            exact_output: output_weights.to_vec(),
            exact_bias: output_bias.to_vec(),
            threads,
        }
    }

    /// A zero state for one sequence, to [`LstmState::feed`] and then read with
    /// [`LstmDecoder::logits_of`].
    pub fn state(&self) -> LstmState {
        LstmState::new(self)
    }

    /// The vocabulary's size: the logits of one state.
    pub fn vocab(&self) -> usize {
        self.exact_bias.len()
    }

    /// The next token's logits after each of `states`, in full precision, row after row into
    /// `out` (`[states, V]`): one matrix product for all of them, so the output layer is read
    /// once per step however many sequences there are. A state's row is the same number for
    /// number whichever other states share the product.
    pub fn logits_of(&self, states: &[&LstmState], out: &mut Vec<f32>) {
        let (v, h) = (self.vocab(), self.hidden_size);
        out.clear();
        if states.is_empty() {
            return;
        }
        // At least two rows: a single row would take the gemm crate's vector path, whose sums
        // run in another order.
        let rows = states.len().max(2);
        let mut tops = Vec::with_capacity(rows * h);
        for state in states.iter().cycle().take(rows) {
            tops.extend_from_slice(state.top());
        }
        for _ in 0..rows {
            out.extend_from_slice(&self.exact_bias);
        }
        // Computed as out^T [V, rows] = output^T [V, H] · tops^T [H, rows]: the output
        // weights, stored [H, V], are then the product's column-major left side, which the
        // gemm crate reads in place (the other way round it repacks all 5 MB every step).
        matmul_by_gemm_transposed(
            out,
            [v, rows, h],
            Operand::transposed(&self.exact_output, v),
            Operand::transposed(&tops, h),
        );
        out.truncate(states.len() * v);
    }

    /// Runs `work` with a fresh [`Session`] (zero state), its helper threads alive until
    /// `work` returns. Helpers come out of one budget for the whole process (see
    /// [`HelperSlots`]); with none left, the caller computes every block.
    pub fn run<R>(&self, work: impl FnOnce(&mut Session<'_>) -> R) -> R {
        let slots = HelperSlots::take(self.threads - 1);
        let (blocks, threads) = (self.output.blocks(), slots.0 + 1);
        let shares: Vec<_> = even::ranges(blocks, threads).collect();
        let mailboxes: Vec<Mailbox> = shares[1..].iter().map(Mailbox::new).collect();
        std::thread::scope(|scope| {
            let helpers = shares[1..]
                .iter()
                .zip(&mailboxes)
                .map(|(share, mailbox)| Helper::spawn(scope, mailbox, &self.output, share.clone()))
                .collect();
            let mut session = Session::new(self, shares[0].clone(), helpers);
            work(&mut session)
        })
    }
}

/// Helper threads alive in this process, over every decoder.
static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// Helper threads a generation has taken from the process's budget of one per core beyond
/// the first, so that concurrent generations (a server's) do not crowd the cores with helpers
/// that wait for tokens; given back when dropped.
struct HelperSlots(usize);

impl HelperSlots {
    /// The process's budget: one helper per core beyond the first (looked up once).
    fn budget() -> usize {
        static BUDGET: OnceLock<usize> = OnceLock::new();
        *BUDGET.get_or_init(|| std::thread::available_parallelism().map_or(0, |n| n.get() - 1))
    }

    /// Up to `want` slots, as many as the budget has left.
    fn take(want: usize) -> Self {
        let budget = Self::budget();
        let mut alive = HELPERS.load(Ordering::Relaxed);
        loop {
            let granted = want.min(budget.saturating_sub(alive));
            let taken = alive + granted;
            match HELPERS.compare_exchange_weak(alive, taken, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Self(granted),
                Err(now) => alive = now,
            }
        }
    }
}

impl Drop for HelperSlots {
    fn drop(&mut self) {
        HELPERS.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// One sequence's LSTM state: every layer's hidden and cell vectors, with the buffers a step
/// uses.
#[derive(Debug, Clone)]
pub struct LstmState {
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    gates: Vec<f32>,
    /// Per layer, the bias plus the hidden state's projection: the part of the next step's
    /// gates known before the next token (a session computes it while its helpers run the
    /// output layer).
    recurrent: Vec<Vec<f32>>,
    recurrent_ready: bool,
    /// Room for a layer's next cell state.
    spare: Vec<f32>,
}

impl LstmState {
    fn new(decoder: &LstmDecoder) -> Self {
        let (layers, hd) = (decoder.layers.len(), decoder.hidden_size);
        Self {
            hidden: vec![vec![0.0; hd]; layers],
            cell: vec![vec![0.0; hd]; layers],
            gates: vec![0.0; 4 * hd],
            recurrent: vec![vec![0.0; 4 * hd]; layers],
            recurrent_ready: false,
            spare: vec![0.0; hd],
        }
    }

    /// Back to the zero state.
    pub fn reset(&mut self) {
        self.recurrent_ready = false;
        self.hidden
            .iter_mut()
            .chain(&mut self.cell)
            .for_each(|s| s.fill(0.0));
    }

    /// Runs token `id` through `decoder`'s LSTM layers (the decoder this state came from),
    /// carrying the state.
    pub fn feed(&mut self, d: &LstmDecoder, id: u32) {
        let e = d.embedding_dim;
        let width = self.gates.len();
        let embedded = &d.embedding[id as usize * e..][..e];
        if !std::mem::take(&mut self.recurrent_ready) {
            self.project_hidden(d);
        }
        for (l, weights) in d.layers.iter().enumerate() {
            let (below, rest) = self.hidden.split_at_mut(l);
            self.gates.copy_from_slice(&self.recurrent[l]);
            match (l, &d.inputs) {
                (0, Some(table)) => {
                    let row = &table[id as usize * width..][..width];
                    self.gates.iter_mut().zip(row).for_each(|(g, x)| *g += x);
                }
                _ => {
                    let input = below.last().map_or(embedded, |h| h.as_slice());
                    accumulate(&weights.input, gate_strides(width), input, &mut self.gates);
                }
            }
            widest_vectors(CellForward {
                gates: &mut self.gates,
                c_prev: &self.cell[l],
                c_next: &mut self.spare,
                h_next: &mut rest[0],
                hd: d.hidden_size,
            });
            std::mem::swap(&mut self.cell[l], &mut self.spare);
        }
    }

    /// Every layer's bias plus its hidden state's projection, into `recurrent`.
    fn project_hidden(&mut self, d: &LstmDecoder) {
        let width = self.gates.len();
        for ((weights, hidden), out) in d.layers.iter().zip(&self.hidden).zip(&mut self.recurrent) {
            out.copy_from_slice(&weights.bias);
            accumulate(&weights.hidden, gate_strides(width), hidden, out);
        }
    }

    /// The top layer's hidden state: what the output layer reads.
    fn top(&self) -> &[f32] {
        self.hidden.last().expect("at least one layer")
    }
}

/// A decoding sequence's state and buffers, with helper threads for the output layer.
pub struct Session<'a> {
    decoder: &'a LstmDecoder,
    state: LstmState,
    share: std::ops::Range<usize>,
    helpers: Vec<Helper<'a>>,
    /// Approximate logits of the current state, padded to whole blocks.
    approximate: Vec<f32>,
    /// The low part's product, padded likewise, then the exact logits.
    low: Vec<f32>,
    exact: Vec<f32>,
    /// Whether `approximate` and `exact` hold the current state's logits.
    ready: [bool; 2],
    epoch: u64,
}

impl<'a> Session<'a> {
    fn new(
        decoder: &'a LstmDecoder,
        share: std::ops::Range<usize>,
        helpers: Vec<Helper<'a>>,
    ) -> Self {
        let padded = decoder.output.blocks() * BLOCK;
        Self {
            decoder,
            state: LstmState::new(decoder),
            share,
            helpers,
            approximate: vec![0.0; padded],
            low: vec![0.0; padded],
            exact: vec![0.0; decoder.output.rows()],
            ready: [false; 2],
            epoch: 0,
        }
    }

    /// Back to the zero state.
    pub fn reset(&mut self) {
        self.ready = [false; 2];
        self.state.reset();
    }

    /// Runs token `id` through the LSTM layers, carrying the state.
    pub fn feed(&mut self, id: u32) {
        self.ready = [false; 2];
        self.state.feed(self.decoder, id);
    }

    /// The next token's logits from the high part alone, with their bound (the slack is per
    /// unit of the Euclidean norm of the hidden state extended by the bias's 1).
    pub fn approximate(&mut self) -> Bounds<'_> {
        if !self.ready[0] {
            self.product(Part::High);
            self.ready[0] = true;
        }
        let rows = self.decoder.output.rows();
        Bounds {
            centre: &self.approximate[..rows],
            slack: self.decoder.output.slack(),
            scale: HalfMatrix::scale(self.state.top()),
        }
    }

    /// The next token's logits to about f32 precision.
    pub fn exact(&mut self) -> &[f32] {
        if !self.ready[1] {
            self.approximate();
            self.product(Part::Low);
            for ((e, a), l) in self.exact.iter_mut().zip(&self.approximate).zip(&self.low) {
                *e = a + l;
            }
            self.ready[1] = true;
        }
        &self.exact
    }

    /// One part's product of the top hidden state, this thread's share computed here and
    /// the others' by the helpers.
    fn product(&mut self, part: Part) {
        self.epoch += 1;
        for helper in &self.helpers {
            helper.post(self.epoch, part, self.state.top());
        }
        if part == Part::High && !self.state.recurrent_ready {
            self.state.project_hidden(self.decoder);
            self.state.recurrent_ready = true;
        }
        let top = self.state.top();
        let out = match part {
            Part::High => &mut self.approximate,
            Part::Low => &mut self.low,
        };
        let share = self.share.clone();
        let (mine, _) = out.split_at_mut(share.end * BLOCK);
        self.decoder
            .output
            .product(part, share.clone(), top, &mut mine[share.start * BLOCK..]);
        for helper in &self.helpers {
            helper.collect(self.epoch, part, top, out);
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        for helper in &self.helpers {
            helper.stop();
        }
    }
}

/// Where the gates' weights `[d_in, 4H]` (row-major) have the columns of a product.
fn gate_strides(width: usize) -> Strides {
    Strides {
        column: width,
        block: BLOCK,
    }
}

/// Spinning this long for the next token before sleeping keeps a helper awake between the
/// tokens of one generation without burning a core once it stops.
const SPIN: Duration = Duration::from_micros(200);

/// What a helper thread and the caller share: a request word (epoch and part, or stop), the
/// epoch last claimed (by the helper, or by the caller when the helper was not there to take
/// it), the epoch last finished by the helper, the vector and the helper's share of the
/// product.
struct Mailbox {
    request: AtomicU64,
    claimed: AtomicU64,
    finished: AtomicU64,
    vector: Mutex<Vec<f32>>,
    out: Mutex<Vec<f32>>,
}

impl Mailbox {
    /// An empty mailbox with room for a share of `blocks`.
    fn new(blocks: &std::ops::Range<usize>) -> Self {
        Self {
            request: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            vector: Mutex::new(Vec::new()),
            out: Mutex::new(vec![0.0; blocks.len() * BLOCK]),
        }
    }

    /// Takes request `epoch` for the calling thread, unless the other side already has.
    fn claim(&self, epoch: u64) -> bool {
        self.claimed
            .compare_exchange(epoch - 1, epoch, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The request word that ends a helper.
const STOP: u64 = u64::MAX;

/// A helper thread computing one share of the blocks of every product.
struct Helper<'a> {
    mailbox: &'a Mailbox,
    matrix: &'a HalfMatrix,
    share: std::ops::Range<usize>,
    thread: ScopedJoinHandle<'a, ()>,
}

impl<'a> Helper<'a> {
    /// Starts a helper computing `share` of `matrix`'s blocks, talking through `mailbox`.
    fn spawn<'env: 'a>(
        scope: &'a Scope<'a, 'env>,
        mailbox: &'env Mailbox,
        matrix: &'env HalfMatrix,
        share: std::ops::Range<usize>,
    ) -> Self {
        let blocks = share.clone();
        let thread = scope.spawn(move || {
            let mut seen = 0;
            loop {
                let request = wait(|| {
                    let r = mailbox.request.load(Ordering::Acquire);
                    (r != seen).then_some(r)
                });
                if request == STOP {
                    return;
                }
                seen = request;
                let epoch = request >> 1;
                if !mailbox.claim(epoch) {
                    continue;
                }
                let part = if request & 1 == 0 {
                    Part::High
                } else {
                    Part::Low
                };
                let vector = mailbox.vector.lock().expect("caller alive");
                let mut out = mailbox.out.lock().expect("caller alive");
                matrix.product(part, blocks.clone(), &vector, &mut out);
                drop((vector, out));
                mailbox.finished.store(epoch, Ordering::Release);
            }
        });
        Self {
            mailbox,
            matrix,
            share,
            thread,
        }
    }

    /// Asks for the product of `vector` with `part` (the request numbered `epoch`).
    fn post(&self, epoch: u64, part: Part, vector: &[f32]) {
        {
            let mut v = self.mailbox.vector.lock().expect("helper alive");
            v.clear();
            v.extend_from_slice(vector);
        }
        let word = epoch << 1 | u64::from(part == Part::Low);
        self.mailbox.request.store(word, Ordering::Release);
        self.thread.thread().unpark();
    }

    /// The helper's share of request `epoch` in `out`: computed here if the helper has not
    /// taken the request yet (it is asleep, or the machine is busy), else waited for. A helper
    /// that ended without finishing (it panicked) has its share computed here too, and the
    /// scope then passes its panic on, rather than leaving the caller waiting forever.
    fn collect(&self, epoch: u64, part: Part, vector: &[f32], out: &mut [f32]) {
        let out = &mut out[self.share.start * BLOCK..self.share.end * BLOCK];
        if self.mailbox.claim(epoch) {
            self.matrix.product(part, self.share.clone(), vector, out);
            return;
        }
        let finished = wait(
            || match self.mailbox.finished.load(Ordering::Acquire) == epoch {
                true => Some(true),
                false => self.thread.is_finished().then_some(false),
            },
        );
        match finished {
            true => out.copy_from_slice(&self.mailbox.out.lock().expect("helper alive")),
            false => self.matrix.product(part, self.share.clone(), vector, out),
        }
    }

    /// Ends the helper's loop.
    fn stop(&self) {
        self.mailbox.request.store(STOP, Ordering::Release);
        self.thread.thread().unpark();
    }
}

/// Polls `ready` until it gives a value: spinning for [`SPIN`], then sleeping between polls
/// (woken early by `unpark`).
fn wait<T>(mut ready: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && start.elapsed() > SPIN {
            std::thread::park_timeout(Duration::from_millis(1));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` values in [-0.3, 0.3], a different sequence for each `seed`.
    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 + seed) * 0.618).sin() * 0.3)
            .collect()
    }

    /// A decoder whose half-precision output layer (9,000 x 32) is large enough for a helper,
    /// with the output weights and biases given.
    fn decoder_with(output: &[f32], bias: &[f32]) -> LstmDecoder {
        let (e, h) = (8, 32);
        let layer = LstmWeights {
            input: values(e * 4 * h, 1.0),
            hidden: values(h * 4 * h, 2.0),
            bias: values(4 * h, 3.0),
        };
        LstmDecoder::new(values(bias.len() * e, 4.0), vec![layer], output, bias, 2)
    }

    fn decoder() -> LstmDecoder {
        decoder_with(&values(32 * 9_000, 5.0), &values(9_000, 6.0))
    }

    /// `n` values in [-0.5, 0.5) from splitmix64: no two rows alike (the sine sequences
    /// repeat nearly every few rows, which ties logits).
    fn scattered(n: usize, seed: u64) -> Vec<f32> {
        let mix = |i: u64| {
            let mut z = (i + seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n as u64)
            .map(|i| (mix(i) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    }

    /// The cumulative probabilities of softmax(logits / temperature), in f64, at which the
    /// `count` most likely tokens' intervals start and end.
    fn edges(logits: &[f64], temperature: f32, count: usize) -> Vec<f64> {
        use crate::decode::bounded::tests::softmax_weights;
        let weights = softmax_weights(logits, temperature);
        let total: f64 = weights.iter().sum();
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
        let before = |k: usize| weights[..k].iter().sum::<f64>() / total;
        order[..count]
            .iter()
            .flat_map(|&k| [before(k), before(k + 1)])
            .filter(|&e| e > 0.0)
            .collect()
    }

    /// With output biases of 1,000 (accumulators that start far from 0, where f32 rounding is
    /// coarse) and at temperatures down to 0.01, every pick the half-precision bound settles,
    /// greedy or drawn, is the pick the logits computed in f64 give. The weights are exact in
    /// f16, so the half-precision part loses nothing and only f32 rounding, mostly the bias's,
    /// separates the two.
    #[test]
    fn settled_picks_equal_full_precision_picks_with_a_large_bias_at_low_temperature() {
        use crate::decode::bounded::tests::draw;
        use crate::decode::bounded::{certain_argmax, certain_draw};
        let (v, h) = (9_000, 32);
        // Weights in [-4, 4): peaked distributions, as a trained model's are.
        let output: Vec<f32> = scattered(h * v, 1)
            .iter()
            .map(|w| half::f16::from_f32(w * 8.0).to_f32())
            .collect();
        for offset in [0.0f32, 1000.0] {
            let bias: Vec<f32> = scattered(v, 2).iter().map(|b| b + offset).collect();
            let decoder = decoder_with(&output, &bias);
            let (mut settled, mut picks) = (0, 0);
            decoder.run(|session| {
                for step in 0..30u32 {
                    session.feed(step * 7 % 9_000);
                    let top = session.state.top().to_vec();
                    let exact: Vec<f64> = (0..v)
                        .map(|r| {
                            let column = (0..h).map(|c| f64::from(output[c * v + r]));
                            let product: f64 =
                                column.zip(&top).map(|(w, &x)| w * f64::from(x)).sum();
                            f64::from(bias[r]) + product
                        })
                        .collect();
                    let bounds = session.approximate();
                    let best = (0..v).max_by(|&a, &b| exact[a].total_cmp(&exact[b]));
                    if let Some(k) = certain_argmax(bounds) {
                        assert_eq!(Some(k), best, "greedy, bias {offset}, step {step}");
                    }
                    for temperature in [0.01f32, 0.1, 1.0] {
                        // Evenly spread draws, and draws just either side of the most likely
                        // tokens' edges, where rounding decides.
                        let near = edges(&exact, temperature, 4).into_iter().flat_map(|edge| {
                            (4..=24)
                                .map(|k| 10f64.powf(-f64::from(k) / 4.0))
                                .flat_map(move |d| [edge * (1.0 - d), edge * (1.0 + d)])
                        });
                        let spread = (0..100).map(|d| (f64::from(d) + 0.5) / 100.0);
                        for u in spread.chain(near).filter(|u| (0.0..1.0).contains(u)) {
                            picks += 1;
                            if let Some(k) = certain_draw(bounds, temperature, u) {
                                settled += 1;
                                let reference = draw(&exact, temperature, u);
                                assert_eq!(k, reference, "bias {offset}, T {temperature}, u {u}");
                            }
                        }
                    }
                }
            });
            assert!(
                settled * 10 > picks,
                "bias {offset}: {settled} of {picks} picks settled"
            );
        }
    }

    /// `n` greedy tokens from token 1.
    fn greedy(session: &mut Session, n: usize) -> Vec<u32> {
        let mut id = 1;
        (0..n)
            .map(|_| {
                session.feed(id);
                let logits = session.exact();
                let best = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b]));
                id = best.expect("a vocabulary") as u32;
                id
            })
            .collect()
    }

    /// A state's row of a batched product is the row it gets alone, number for number, in
    /// batches of every size up to 40; and it is the product computed plainly.
    #[test]
    fn a_states_logits_do_not_depend_on_the_states_beside_it() {
        let decoder = decoder();
        let v = decoder.vocab();
        let tokens = |k: usize| (0..=k % 5).map(move |t| ((t * 37 + k * 11) % 9_000) as u32);
        let states: Vec<LstmState> = (0..40)
            .map(|k| {
                let mut state = decoder.state();
                tokens(k).for_each(|id| state.feed(&decoder, id));
                state
            })
            .collect();
        let mut alone = Vec::new();
        decoder.logits_of(&[&states[3]], &mut alone);
        assert_eq!(alone.len(), v);
        for size in [4, 5, 17, 40] {
            let batch: Vec<&LstmState> = states.iter().take(size).collect();
            let mut together = Vec::new();
            decoder.logits_of(&batch, &mut together);
            assert_eq!(together.len(), size * v);
            assert!(alone == together[3 * v..4 * v], "batch of {size}");
        }
        let top = states[3].top();
        for (r, a) in alone.iter().enumerate() {
            let column = (0..top.len()).map(|c| decoder.exact_output[c * v + r]);
            let b = decoder.exact_bias[r] + column.zip(top).map(|(w, x)| w * x).sum::<f32>();
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    /// A generation that starts while another holds the process's helpers runs without one,
    /// and both give the tokens a lone generation gives.
    #[test]
    fn concurrent_generations_share_one_helper_budget() {
        let decoder = decoder();
        assert_eq!(decoder.threads, 2);
        let alone = decoder.run(|session| greedy(session, 30));
        let budget = HelperSlots::budget();
        decoder.run(|outer| {
            let held = outer.helpers.len();
            let (inner_helpers, inner) = std::thread::scope(|scope| {
                let inner =
                    scope.spawn(|| decoder.run(|inner| (inner.helpers.len(), greedy(inner, 30))));
                inner.join().expect("the second generation")
            });
            assert!(
                held + inner_helpers <= budget,
                "{held} + {inner_helpers} helpers, budget {budget}"
            );
            assert_eq!(inner, alone);
            assert_eq!(greedy(outer, 30), alone);
        });
        assert_eq!(HELPERS.load(Ordering::Relaxed), 0, "every slot given back");
    }

    /// A helper that panics inside a request it has taken does not leave its caller waiting:
    /// the caller computes the share itself, and the scope then passes the panic on.
    #[test]
    fn a_panicking_helper_does_not_hang_its_caller() {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let decoder = decoder();
            let matrix = &decoder.output;
            let share = 0..matrix.blocks();
            // Room for one block only: the helper's product panics.
            let mailbox = Mailbox::new(&(0..1));
            let x = vec![0.5f32; decoder.hidden_size];
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                std::thread::scope(|scope| {
                    let helper = Helper::spawn(scope, &mailbox, matrix, share.clone());
                    helper.post(1, Part::High, &x);
                    while mailbox.claimed.load(Ordering::Acquire) != 1 {
                        std::hint::spin_loop();
                    }
                    let mut out = vec![0.0f32; share.len() * BLOCK];
                    helper.collect(1, Part::High, &x, &mut out);
                    helper.stop();
                    out
                })
            }));
            let _ = sender.send(run.is_err());
        });
        let panicked = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("the caller still waits for the dead helper");
        assert!(panicked, "the helper's panic is passed on");
    }
}

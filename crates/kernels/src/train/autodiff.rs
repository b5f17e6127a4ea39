//! How a fused operation joins Burn's autodiff tape: its forward pass runs on the inner
//! backend's tensors, and its hand-written backward pass returns one gradient per input.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

/// A fused operation's backward pass: from what its forward pass kept and its output's
/// gradient, the gradient of each of its `N` float inputs, in order.
pub(crate) trait HandBackward<B: Backend, const N: usize>: Debug + Send + 'static {
    /// What the forward pass keeps for the backward pass.
    type State: Clone + Send + Debug + 'static;

    /// The inputs' gradients.
    fn gradients(state: Self::State, grad: FloatTensor<B>) -> [FloatTensor<B>; N];
}

/// Burn's side of a [`HandBackward`]: takes the output's gradient off the tape and registers
/// each input's.
#[derive(Debug)]
struct Node<K>(PhantomData<K>);

impl<B: Backend, K: HandBackward<B, N>, const N: usize> Backward<B, N> for Node<K> {
    type State = K::State;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        for (parent, g) in ops.parents.into_iter().zip(K::gradients(ops.state, grad)) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Runs `forward` on the inner tensors of `inputs`, telling it whether any input is tracked
/// (whether a backward pass can follow), and records its output on the tape with `K`'s
/// backward pass, keeping the state `forward` returns when an input is tracked.
pub(crate) fn record<B, C, K, const N: usize>(
    inputs: [FloatTensor<Autodiff<B, C>>; N],
    forward: impl FnOnce([FloatTensor<B>; N], bool) -> (FloatTensor<B>, K::State),
) -> FloatTensor<Autodiff<B, C>>
where
    B: Backend,
    C: CheckpointStrategy,
    K: HandBackward<B, N>,
{
    let guards = inputs.each_ref().map(|t| t.node());
    let kind = Node::<K>(PhantomData)
        .prepare::<C>(guards)
        .compute_bound()
        .stateful();
    let tracked = matches!(kind, OpsKind::Tracked(_));
    let (out, state) = forward(inputs.map(|t| t.into_primitive()), tracked);
    match kind {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

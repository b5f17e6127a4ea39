//! Training operations for flex: the LSTM layer and the output layer with its softmax
//! cross-entropy, each one backend operation with a hand-written backward pass, Adam's update in
//! one pass, and how they join Burn's autodiff.

pub mod adam;
pub(crate) mod autodiff;
pub(crate) mod flex_buffers;
pub mod linear_cross_entropy;
pub mod lstm;

//! Generation on the CPU: a decoder that runs a sequence a token at a time on plain slices, its
//! output layer in half precision, and the bounds that tell when half precision cannot change
//! the token picked.

pub mod bounded;
pub mod decoder;
pub mod half_matrix;
pub mod softmax;

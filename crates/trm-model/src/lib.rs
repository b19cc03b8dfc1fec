//! Tiny Recursive Models on Burn, generic over the backend.
//!
//! One tiny network (2 post-norm blocks) is applied recursively to an input x, an answer
//! y and a latent z: n times `z = net(x + y + z)`, then `y = net(y + z)` make one cycle; T
//! cycles (the first T-1 without gradients) make one supervision step; up to N_sup steps
//! follow one another, with a halting head deciding when a sample is done.
//!
//! | paper | ours | official code |
//! |---|---|---|
//! | y (answer) | `Carry::y` | `z_H` |
//! | z (latent) | `Carry::z` | `z_L` |
//! | T | `TrmConfig::t_cycles` | `H_cycles` |
//! | n | `TrmConfig::n_cycles` | `L_cycles` |
//! | N_sup | `TrmConfig::n_sup` | `halt_max_steps` |
//! | net | [`block::ReasoningModule`] | `L_level` |
//!
//! ```
//! use burn::backend::NdArray;
//! use trm_model::{TrmConfig, InferenceOptions, trm_inference};
//! use burn::tensor::{Int, Tensor};
//!
//! let mut config = TrmConfig::sudoku_mlp();
//! config.hidden_size = 32;
//! let device = Default::default();
//! let model = config.init::<NdArray<f32>>(&device);
//! let inputs = Tensor::<NdArray<f32>, 2, Int>::ones([2, 81], &device);
//! let ids = Tensor::<NdArray<f32>, 1, Int>::zeros([2], &device);
//! let out = trm_inference(&model, inputs, ids, InferenceOptions { max_steps: 2, halt: true });
//! assert_eq!(out.steps, vec![2, 2]); // a fresh Q head (bias -5) never halts early
//! ```

#![recursion_limit = "256"]

pub mod act;
pub mod ar;
pub mod attention;
pub mod bench;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod inference;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod model;
pub mod parity;
pub mod train_step;

pub use act::{ActCarry, HaltingRule, HostBatch};
pub use checkpoint::load_model;
pub use config::{PosEncoding, TrmConfig};
pub use error::ModelError;
pub use inference::{trm_inference, InferenceOptions, InferenceOutput};
pub use loss::{act_loss, ActLoss, LossType};
pub use model::{one_step_train, supervision_step_train, Carry, HeadOutput, StepOutput, Trm};
pub use train_step::{supervision_step_gradients, GradientScope, LossOptions, StepGradients};

//! The model configuration: every field of the official arch config, validated.
//!
//! Field names are ours (the paper's vocabulary); serde also accepts the official names
//! (`H_cycles`, `L_cycles`, `halt_max_steps`, ...), so an official `config.json` or the
//! `arch:` block of a Hydra config loads unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Position encoding of the input sequence (puzzle prefix included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PosEncoding {
    /// Rotary embedding on q and k, in the `rotate_half` form of the official code.
    #[default]
    Rope,
    /// A learned table added to the input, then scaled by 1/sqrt(2).
    Learned,
    /// No position information (the MLP-mixer variant needs none).
    None,
}

impl PosEncoding {
    /// The official code treats any string other than `rope` and `learned` as none.
    fn from_official(s: &str) -> Self {
        match s {
            "rope" => PosEncoding::Rope,
            "learned" => PosEncoding::Learned,
            _ => PosEncoding::None,
        }
    }
}

fn de_pos_encoding<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PosEncoding, D::Error> {
    let s = String::deserialize(d)?;
    Ok(PosEncoding::from_official(&s.to_ascii_lowercase()))
}

fn default_rms_norm_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_puzzle_emb_len() -> usize {
    16
}
fn default_true() -> bool {
    true
}
fn default_halt_exploration_prob() -> f64 {
    0.1
}
fn default_layers() -> usize {
    2
}

/// Architecture of a Tiny Recursive Model.
///
/// | ours | official | paper |
/// |---|---|---|
/// | `t_cycles` | `H_cycles` | T |
/// | `n_cycles` | `L_cycles` | n |
/// | `n_sup` | `halt_max_steps` | N_sup |
/// | `layers` | `L_layers` | 2 |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrmConfig {
    /// Model width D.
    pub hidden_size: usize,
    /// Attention heads; head_dim = hidden_size / num_heads.
    pub num_heads: usize,
    /// SwiGLU expansion factor (inner size = round_up(round(expansion * h * 2/3), 256)).
    pub expansion: f64,
    /// Blocks in the one network.
    #[serde(alias = "L_layers", default = "default_layers")]
    pub layers: usize,
    /// T: recursion cycles per supervision step (T-1 without gradients).
    #[serde(alias = "H_cycles")]
    pub t_cycles: usize,
    /// n: latent updates per cycle.
    #[serde(alias = "L_cycles")]
    pub n_cycles: usize,
    /// Position encoding.
    #[serde(default, deserialize_with = "de_pos_encoding")]
    pub pos_encodings: PosEncoding,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Width of one puzzle embedding (0 disables them).
    #[serde(default)]
    pub puzzle_emb_ndim: usize,
    /// Prefix positions the puzzle embedding occupies; 0 means ceil(puzzle_emb_ndim / hidden_size).
    #[serde(default = "default_puzzle_emb_len")]
    pub puzzle_emb_len: usize,
    /// Token-mixing MLP over the sequence axis instead of attention (TRM-MLP).
    #[serde(default)]
    pub mlp_t: bool,
    /// Token vocabulary (from the dataset).
    pub vocab_size: usize,
    /// Sequence length without the puzzle prefix (from the dataset).
    pub seq_len: usize,
    /// Rows of the puzzle-embedding table (from the dataset).
    pub num_puzzle_identifiers: usize,
    /// N_sup: the most supervision steps a sample gets.
    #[serde(alias = "halt_max_steps")]
    pub n_sup: usize,
    /// Probability that a training sample gets a random minimum number of steps.
    #[serde(default = "default_halt_exploration_prob")]
    pub halt_exploration_prob: f64,
    /// Only the halt BCE (true, the published runs); false adds the Q-continue loss and target.
    #[serde(alias = "no_ACT_continue", default = "default_true")]
    pub no_act_continue: bool,
    /// Official fields with no effect here, accepted so official configs load: `H_layers` is
    /// ignored by TRM, `batch_size` is a training setting, `forward_dtype` is float32 here.
    #[serde(alias = "H_layers", default, skip_serializing)]
    pub h_layers: Option<usize>,
    /// See `h_layers`.
    #[serde(default, skip_serializing)]
    pub batch_size: Option<usize>,
    /// See `h_layers`.
    #[serde(default, skip_serializing)]
    pub forward_dtype: Option<String>,
}

/// The most T, n or N_sup a config may ask for (`validate`).
pub const MAX_RECURSION: usize = 1024;

impl TrmConfig {
    /// The paper's TRM-Att Sudoku configuration (7M parameters).
    pub fn sudoku_att() -> Self {
        Self {
            hidden_size: 512,
            num_heads: 8,
            expansion: 4.0,
            layers: 2,
            t_cycles: 3,
            n_cycles: 6,
            pos_encodings: PosEncoding::Rope,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-5,
            puzzle_emb_ndim: 512,
            puzzle_emb_len: 16,
            mlp_t: false,
            vocab_size: 11,
            seq_len: 81,
            num_puzzle_identifiers: 1,
            n_sup: 16,
            halt_exploration_prob: 0.1,
            no_act_continue: true,
            h_layers: None,
            batch_size: None,
            forward_dtype: None,
        }
    }

    /// The paper's TRM-MLP Sudoku configuration (5M parameters).
    pub fn sudoku_mlp() -> Self {
        Self { mlp_t: true, pos_encodings: PosEncoding::None, ..Self::sudoku_att() }
    }

    /// Reads a config from JSON (official `config.json` or ours).
    pub fn from_json_str(s: &str) -> Result<Self, ModelError> {
        let cfg: Self = serde_json::from_str(s).map_err(|e| ModelError::Config(format!("invalid JSON config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a config from TOML.
    pub fn from_toml_str(s: &str) -> Result<Self, ModelError> {
        let cfg: Self = toml::from_str(s).map_err(|e| ModelError::Config(format!("invalid TOML config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a config file, JSON or TOML by extension.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            Self::from_toml_str(&text)
        } else {
            Self::from_json_str(&text)
        };
        parsed.map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))
    }

    /// Checks every field; the error names the field and the problem.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, why: String| Err(ModelError::Config(format!("{field}: {why}")));
        if self.hidden_size == 0 {
            return bad("hidden_size", "must be positive".into());
        }
        if !self.mlp_t {
            if self.num_heads == 0 {
                return bad("num_heads", "must be positive".into());
            }
            if !self.hidden_size.is_multiple_of(self.num_heads) {
                return bad(
                    "hidden_size",
                    format!("{} is not divisible by num_heads = {}", self.hidden_size, self.num_heads),
                );
            }
            if self.pos_encodings == PosEncoding::Rope && !self.head_dim().is_multiple_of(2) {
                return bad("num_heads", format!("RoPE needs an even head_dim, got {}", self.head_dim()));
            }
        }
        if !(self.expansion.is_finite() && self.expansion > 0.0) {
            return bad("expansion", format!("must be a positive number, got {}", self.expansion));
        }
        if self.layers == 0 {
            return bad("layers (L_layers)", "must be at least 1".into());
        }
        for (field, v) in [
            ("t_cycles (H_cycles, T)", self.t_cycles),
            ("n_cycles (L_cycles, n)", self.n_cycles),
            ("n_sup (halt_max_steps, N_sup)", self.n_sup),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
            // The paper's are 3, 6 and 16; a typo of a few zeros would otherwise run for days
            // (the network calls multiply: T(n+1) per supervision step, N_sup steps).
            if v > MAX_RECURSION {
                return bad(field, format!("{v} is more than {MAX_RECURSION}"));
            }
        }
        if self.vocab_size == 0 {
            return bad("vocab_size", "must be positive".into());
        }
        if self.seq_len == 0 {
            return bad("seq_len", "must be positive".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", format!("must be positive, got {}", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta", format!("must be positive, got {}", self.rope_theta));
        }
        if !(0.0..=1.0).contains(&self.halt_exploration_prob) {
            return bad("halt_exploration_prob", format!("must be in [0, 1], got {}", self.halt_exploration_prob));
        }
        if self.puzzle_emb_ndim > 0 {
            if self.num_puzzle_identifiers == 0 {
                return bad("num_puzzle_identifiers", "must be positive when puzzle_emb_ndim > 0".into());
            }
            if self.puzzle_emb_ndim > self.prefix_len() * self.hidden_size {
                return bad(
                    "puzzle_emb_len",
                    format!(
                        "{} prefix positions of width {} cannot hold a puzzle embedding of {}",
                        self.prefix_len(),
                        self.hidden_size,
                        self.puzzle_emb_ndim
                    ),
                );
            }
        } else if self.puzzle_emb_len > 0 {
            // The official code keeps `puzzle_emb_len` prefix positions in the position tables and
            // drops them from the logits, but concatenates no prefix: it crashes or drops real
            // tokens. Without puzzle embeddings the prefix must be 0.
            return bad("puzzle_emb_len", "must be 0 when puzzle_emb_ndim is 0 (no puzzle prefix)".into());
        }
        Ok(())
    }

    /// Head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// Puzzle-prefix positions P: `puzzle_emb_len`, or ceil(ndim / D) when that is 0.
    pub fn prefix_len(&self) -> usize {
        if self.puzzle_emb_len == 0 {
            self.puzzle_emb_ndim.div_ceil(self.hidden_size)
        } else {
            self.puzzle_emb_len
        }
    }

    /// Full sequence length P + L the network sees.
    pub fn full_seq_len(&self) -> usize {
        self.prefix_len() + self.seq_len
    }

    /// Network calls per supervision step: T(n+1).
    pub fn net_calls_per_step(&self) -> usize {
        self.t_cycles * (self.n_cycles + 1)
    }
}

/// SwiGLU inner width of the official code: round_up(round(expansion * h * 2/3), 256).
pub fn swiglu_inner(hidden: usize, expansion: f64) -> usize {
    // Python's round() rounds half to even; f64::round_ties_even matches it.
    let inner = (expansion * hidden as f64 * 2.0 / 3.0).round_ties_even() as usize;
    inner.div_ceil(256) * 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_sizes_match_the_reference() {
        // Reference §1.4: D=512 -> 1536; token-mix over L'=97 -> 512, L'=916 -> 2560.
        assert_eq!(swiglu_inner(512, 4.0), 1536);
        assert_eq!(swiglu_inner(97, 4.0), 512);
        assert_eq!(swiglu_inner(916, 4.0), 2560);
        // Fixture shapes: hidden 64 -> gate_up [512, 64]; hidden 32 -> [512, 32].
        assert_eq!(swiglu_inner(64, 4.0), 256);
        assert_eq!(swiglu_inner(32, 4.0), 256);
        // round(384 * 2/3 = 256) exactly -> 256; 385 * 2/3 = 256.67 -> 257 -> 512.
        assert_eq!(swiglu_inner(96, 4.0), 256);
        assert_eq!(swiglu_inner(385, 1.0), 512);
    }

    #[test]
    fn official_config_json_loads() {
        let json = r#"{"H_cycles": 2, "H_layers": 0, "L_cycles": 3, "L_layers": 2, "batch_size": 4,
            "expansion": 4, "forward_dtype": "float32", "halt_exploration_prob": 0.1, "halt_max_steps": 4,
            "hidden_size": 64, "mlp_t": false, "no_ACT_continue": true, "num_heads": 4,
            "num_puzzle_identifiers": 7, "pos_encodings": "rope", "puzzle_emb_len": 16,
            "puzzle_emb_ndim": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "seq_len": 16, "vocab_size": 6}"#;
        let c = TrmConfig::from_json_str(json).unwrap();
        assert_eq!((c.t_cycles, c.n_cycles, c.n_sup, c.layers), (2, 3, 4, 2));
        assert_eq!(c.pos_encodings, PosEncoding::Rope);
        assert_eq!(c.full_seq_len(), 32);
        assert_eq!(c.head_dim(), 16);
    }

    #[test]
    fn prefix_len_zero_means_ceil() {
        let mut c = TrmConfig::sudoku_att();
        c.puzzle_emb_len = 0;
        c.puzzle_emb_ndim = 513;
        assert_eq!(c.prefix_len(), 2);
        c.puzzle_emb_ndim = 512;
        assert_eq!(c.prefix_len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = TrmConfig::sudoku_att();
        c.num_heads = 7;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("hidden_size") && e.contains("num_heads"), "{e}");

        let mut c = TrmConfig::sudoku_att();
        c.puzzle_emb_len = 1;
        c.puzzle_emb_ndim = 600;
        assert!(c.validate().unwrap_err().to_string().contains("puzzle_emb_len"));

        let mut c = TrmConfig::sudoku_att();
        c.t_cycles = 0;
        assert!(c.validate().unwrap_err().to_string().contains("H_cycles"));

        // Recursion depths with a few zeros too many are errors, not runs of days.
        for (i, field) in ["H_cycles", "L_cycles", "halt_max_steps"].into_iter().enumerate() {
            let mut c = TrmConfig::sudoku_att();
            *[&mut c.t_cycles, &mut c.n_cycles, &mut c.n_sup][i] = 1_000_000;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("1000000 is more than 1024"), "{e}");
            *[&mut c.t_cycles, &mut c.n_cycles, &mut c.n_sup][i] = MAX_RECURSION;
            c.validate().unwrap();
        }

        let e = TrmConfig::from_toml_str("hidden_size = 'big'").unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");

        let e = TrmConfig::from_json_str("{\"hidden_size\": 64, \"bogus\": 1}").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn unknown_position_encoding_is_none_like_the_official_code() {
        let mut v = serde_json::to_value(TrmConfig::sudoku_att()).unwrap();
        v["pos_encodings"] = "sinusoidal".into();
        let c: TrmConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c.pos_encodings, PosEncoding::None);
    }

    #[test]
    fn toml_round_trip() {
        let c = TrmConfig::sudoku_mlp();
        let s = toml::to_string(&c).unwrap();
        assert_eq!(TrmConfig::from_toml_str(&s).unwrap(), c);
    }
}

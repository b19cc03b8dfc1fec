//! Generated character-level tasks for the autoregressive TRM: multi-digit addition (with a
//! per-token carry-lookahead difficulty), addition with frequent carry chains (the same
//! format, a wider spread of difficulty) and sorting, with a longer-length test split.
//!
//! Token map (shared by both tasks, [`VOCAB_SIZE`] = 14):
//!
//! | token | id |
//! |---|---|
//! | digits `0`..`9` | 0..9 |
//! | `+` | [`PLUS`] = 10 |
//! | `=` (end of prompt) | [`EQUALS`] = 11 |
//! | end of answer `$` | [`EOS`] = 12 |
//! | padding `_` | [`PAD`] = 13 |
//!
//! Addition of two n-digit operands (zero-padded, most significant digit first):
//! `a + b =` then the n+1 digit sum (a leading 0 when there is no final carry) then `$`,
//! e.g. `57+68=125$`. Sorting n digits ascending: `3 1 2 =` then `1 2 3 $`, e.g. `312=123$`.
//! A model reads `tokens[..len-1]` and predicts `tokens[1..]`; only the predictions of the
//! answer (and `$`) are scored ([`ArSample::training_pair`]).

use std::ops::RangeInclusive;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::sampler::IGNORE_LABEL_ID;

/// The ignored label as i64 (the Burn side's label type).
pub const IGNORE: i64 = IGNORE_LABEL_ID as i64;

/// `+`.
pub const PLUS: u32 = 10;
/// `=`: the prompt ends here.
pub const EQUALS: u32 = 11;
/// `$`: the answer ends here.
pub const EOS: u32 = 12;
/// `_`: padding (never predicted).
pub const PAD: u32 = 13;
/// Tokens in the map.
pub const VOCAB_SIZE: usize = 14;

/// Which task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArTask {
    /// n-digit + n-digit addition, answer most significant digit first.
    Addition,
    /// Sorting n digits ascending.
    Sort,
    /// n-digit addition whose digit pairs sum to exactly 9 with probability 1/2 (otherwise
    /// uniform), so long carry chains are common and the per-token carry lookahead
    /// ([`carry_lookahead`]) varies from 1 to n within one answer.
    CarryChains,
}

/// One sequence: the prompt (ending in `=`) followed by the answer (ending in `$`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArSample {
    /// Prompt then answer.
    pub tokens: Vec<u32>,
    /// Tokens in the prompt (through `=`).
    pub prompt_len: usize,
    /// Per answer token (including `$`), how hard it is, where the task defines it: for
    /// addition the carry lookahead ([`carry_lookahead`]; `$` gets 0); `None` for sorting.
    pub difficulty: Option<Vec<u32>>,
}

impl ArSample {
    /// The answer tokens (through `$`).
    pub fn answer(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }

    /// Inputs and labels of length `len` for next-token training: inputs are
    /// `tokens[..L-1]` and labels `tokens[1..]`, both padded to `len` (inputs with [`PAD`],
    /// labels with [`IGNORE`]); labels inside the prompt are ignored, so exactly
    /// the answer tokens are scored. Panics when the sample is longer than `len + 1`.
    pub fn training_pair(&self, len: usize) -> (Vec<i64>, Vec<i64>) {
        let n = self.tokens.len() - 1;
        assert!(n <= len, "sample of {} tokens does not fit {len} inputs", self.tokens.len());
        let mut inputs: Vec<i64> = self.tokens[..n].iter().map(|&t| t as i64).collect();
        let mut labels: Vec<i64> =
            (1..=n).map(|i| if i < self.prompt_len { IGNORE } else { self.tokens[i] as i64 }).collect();
        inputs.resize(len, PAD as i64);
        labels.resize(len, IGNORE);
        (inputs, labels)
    }
}

/// The sequence as text (`0`-`9`, `+`, `=`, `$`, `_`).
pub fn render(tokens: &[u32]) -> String {
    tokens
        .iter()
        .map(|&t| match t {
            0..=9 => char::from(b'0' + t as u8),
            PLUS => '+',
            EQUALS => '=',
            EOS => '$',
            PAD => '_',
            _ => '?',
        })
        .collect()
}

/// Parses text in the token map (`0`-`9`, `+`, `=`, `$`, `_`; spaces ignored) into tokens.
pub fn tokenize(text: &str) -> Result<Vec<u32>, crate::DataError> {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .enumerate()
        .map(|(i, c)| match c {
            '0'..='9' => Ok(c as u32 - '0' as u32),
            '+' => Ok(PLUS),
            '=' => Ok(EQUALS),
            '$' => Ok(EOS),
            '_' => Ok(PAD),
            _ => Err(crate::DataError::Config(format!(
                "character {c:?} at position {i} is not a token (the AR tasks use 0-9, +, =, $ and _)"
            ))),
        })
        .collect()
}

/// Per answer digit of `a + b` (equal-length digit slices, most significant first), the
/// number of lower digit positions one must inspect to know the carry into that digit:
/// 0 for the units digit (no carry in); otherwise 1 + the number of consecutive positions
/// directly below whose digit sum is exactly 9 (they propagate a carry, so the scan goes
/// on), stopping at the units. Returned most significant first, n + 1 values (the first is
/// the final-carry digit). This is the per-token difficulty when the answer is written
/// most significant digit first: the model must resolve a carry chain it has not written yet.
pub fn carry_lookahead(a: &[u8], b: &[u8]) -> Vec<u32> {
    assert_eq!(a.len(), b.len(), "operands are zero-padded to the same length");
    let n = a.len();
    // Position p counts from the units (p = 0) up to the final carry (p = n).
    let sum = |p: usize| a[n - 1 - p] + b[n - 1 - p];
    let mut out: Vec<u32> = (0..=n)
        .map(|p| {
            if p == 0 {
                return 0;
            }
            let mut inspected = 1;
            let mut q = p - 1;
            while q > 0 && sum(q) == 9 {
                inspected += 1;
                q -= 1;
            }
            inspected
        })
        .collect();
    out.reverse();
    out
}

/// `a + b` as a sample; `a` and `b` are digits (most significant first) of equal length.
pub fn addition(a: &[u8], b: &[u8]) -> ArSample {
    assert_eq!(a.len(), b.len(), "operands are zero-padded to the same length");
    assert!(a.iter().chain(b).all(|&d| d < 10), "digits only");
    let n = a.len();
    let mut sum = vec![0u32; n + 1];
    let mut carry = 0;
    for p in 0..n {
        let s = a[n - 1 - p] + b[n - 1 - p] + carry;
        sum[n - p] = (s % 10) as u32;
        carry = s / 10;
    }
    sum[0] = carry as u32;
    let mut tokens: Vec<u32> = a.iter().map(|&d| d as u32).collect();
    tokens.push(PLUS);
    tokens.extend(b.iter().map(|&d| d as u32));
    tokens.push(EQUALS);
    let prompt_len = tokens.len();
    tokens.extend(sum);
    tokens.push(EOS);
    let mut difficulty = carry_lookahead(a, b);
    difficulty.push(0);
    ArSample { tokens, prompt_len, difficulty: Some(difficulty) }
}

/// Sorting `items` (digits) ascending as a sample.
pub fn sort(items: &[u8]) -> ArSample {
    assert!(items.iter().all(|&d| d < 10), "digits only");
    let mut tokens: Vec<u32> = items.iter().map(|&d| d as u32).collect();
    tokens.push(EQUALS);
    let prompt_len = tokens.len();
    let mut sorted = tokens[..items.len()].to_vec();
    sorted.sort_unstable();
    tokens.extend(sorted);
    tokens.push(EOS);
    ArSample { tokens, prompt_len, difficulty: None }
}

/// One random sample of size `n` (digits per operand, or items to sort).
pub fn random_sample(task: ArTask, n: usize, rng: &mut ChaCha8Rng) -> ArSample {
    let mut digits = |k: usize| -> Vec<u8> { (0..k).map(|_| rng.gen_range(0..10u8)).collect() };
    match task {
        ArTask::Addition => {
            let a = digits(n);
            addition(&a, &digits(n))
        }
        ArTask::Sort => sort(&digits(n)),
        ArTask::CarryChains => {
            let a = digits(n);
            let b: Vec<u8> =
                a.iter().map(|&d| if rng.gen_bool(0.5) { 9 - d } else { rng.gen_range(0..10u8) }).collect();
            addition(&a, &b)
        }
    }
}

/// Which split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Sizes in the training range.
    Train,
    /// Sizes in the training range, an independent stream.
    Test,
    /// Sizes beyond the training range (length generalisation).
    TestLong,
}

/// A task with its training and long-test size ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArTaskConfig {
    /// The task.
    pub task: ArTask,
    /// Sizes for [`Split::Train`] and [`Split::Test`].
    pub train_sizes: RangeInclusive<usize>,
    /// Sizes for [`Split::TestLong`] (all larger than the training sizes).
    pub long_sizes: RangeInclusive<usize>,
}

impl ArTaskConfig {
    /// `count` samples of `split`, sizes uniform over the split's range, deterministic in
    /// `seed`; the three splits draw from different streams of the same seed.
    pub fn split(&self, split: Split, count: usize, seed: u64) -> Vec<ArSample> {
        assert!(self.long_sizes.start() > self.train_sizes.end(), "long sizes must exceed the training sizes");
        let (sizes, stream) = match split {
            Split::Train => (self.train_sizes.clone(), 0),
            Split::Test => (self.train_sizes.clone(), 1),
            Split::TestLong => (self.long_sizes.clone(), 2),
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        (0..count)
            .map(|_| {
                let n = rng.gen_range(sizes.clone());
                random_sample(self.task, n, &mut rng)
            })
            .collect()
    }

    /// The longest sequence (in tokens) any split produces.
    pub fn max_tokens(&self) -> usize {
        let n = *self.long_sizes.end();
        match self.task {
            ArTask::Addition | ArTask::CarryChains => 3 * n + 4,
            ArTask::Sort => 2 * n + 2,
        }
    }
}

/// Row-major [count, len] inputs and labels of `samples` (see [`ArSample::training_pair`]).
pub fn batch(samples: &[ArSample], len: usize) -> (Vec<i64>, Vec<i64>) {
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    for s in samples {
        let (i, l) = s.training_pair(len);
        inputs.extend(i);
        labels.extend(l);
    }
    (inputs, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addition_by_hand() {
        let s = addition(&[5, 7], &[6, 8]);
        assert_eq!(render(&s.tokens), "57+68=125$");
        assert_eq!(s.prompt_len, 6);
        assert_eq!(s.answer(), &[1, 2, 5, EOS]);
        // Units: 0. Tens: inspects the units (15, not 9): 1. Final carry: inspects the tens (11): 1.
        assert_eq!(s.difficulty, Some(vec![1, 1, 0, 0]));
        let s = addition(&[1, 2], &[3, 4]);
        assert_eq!(render(&s.tokens), "12+34=046$");
        assert_eq!(s.difficulty, Some(vec![1, 1, 0, 0]));
    }

    #[test]
    fn carry_chains_by_hand() {
        // 45 + 55 = 100: tens sum 9 propagates the units' carry: the final carry inspects 2.
        let s = addition(&[4, 5], &[5, 5]);
        assert_eq!(render(&s.tokens), "45+55=100$");
        assert_eq!(s.difficulty, Some(vec![2, 1, 0, 0]));
        // 999 + 001 = 1000: the chain runs through every 9.
        assert_eq!(render(&addition(&[9, 9, 9], &[0, 0, 1]).tokens), "999+001=1000$");
        assert_eq!(carry_lookahead(&[9, 9, 9], &[0, 0, 1]), vec![3, 2, 1, 0]);
        // 4 5 0 7 + 5 4 9 2: sums (MSD first) 9 9 9 9 -> no carry anywhere, but every digit
        // must scan to the units to know that.
        assert_eq!(carry_lookahead(&[4, 5, 0, 7], &[5, 4, 9, 2]), vec![4, 3, 2, 1, 0]);
        assert_eq!(render(&addition(&[4, 5, 0, 7], &[5, 4, 9, 2]).tokens), "4507+5492=09999$");
        // A sum of 8 or 10 stops the scan.
        assert_eq!(carry_lookahead(&[1, 4, 9], &[7, 4, 9]), vec![1, 1, 1, 0]);
    }

    #[test]
    fn sort_by_hand() {
        let s = sort(&[3, 1, 2, 1]);
        assert_eq!(render(&s.tokens), "3121=1123$");
        assert_eq!(s.prompt_len, 5);
        assert_eq!(s.difficulty, None);
    }

    #[test]
    fn training_pairs_score_only_the_answer() {
        let s = addition(&[5, 7], &[6, 8]); // 57+68=125$
        let (inputs, labels) = s.training_pair(11);
        let ig = IGNORE;
        assert_eq!(inputs, vec![5, 7, 10, 6, 8, 11, 1, 2, 5, 13, 13]);
        assert_eq!(labels, vec![ig, ig, ig, ig, ig, 1, 2, 5, 12, ig, ig]);
        let (bi, bl) = batch(&[s.clone(), sort(&[2, 0])], 9);
        assert_eq!(bi.len(), 18);
        assert_eq!(bl[9..], [ig, ig, 0, 2, 12, ig, ig, ig, ig]);
    }

    #[test]
    fn random_samples_are_correct_and_splits_are_deterministic_and_disjoint_in_size() {
        let cfg = ArTaskConfig { task: ArTask::Addition, train_sizes: 1..=3, long_sizes: 5..=6 };
        let train = cfg.split(Split::Train, 200, 7);
        assert_eq!(train, cfg.split(Split::Train, 200, 7));
        assert_ne!(train, cfg.split(Split::Test, 200, 7));
        for s in &train {
            let n = (s.prompt_len - 2) / 2;
            assert!((1..=3).contains(&n));
            // Check the sum by integer arithmetic.
            let num = |d: &[u32]| d.iter().fold(0u64, |acc, &x| acc * 10 + x as u64);
            let (a, b) = (num(&s.tokens[..n]), num(&s.tokens[n + 1..2 * n + 1]));
            assert_eq!(num(&s.answer()[..n + 1]), a + b, "{}", render(&s.tokens));
        }
        let long = cfg.split(Split::TestLong, 50, 7);
        assert!(long.iter().all(|s| (5..=6).contains(&((s.prompt_len - 2) / 2))));
        assert!(long.iter().all(|s| s.tokens.len() <= cfg.max_tokens()));
        let sorts = ArTaskConfig { task: ArTask::Sort, train_sizes: 2..=4, long_sizes: 8..=8 };
        for s in sorts.split(Split::TestLong, 20, 1) {
            assert_eq!(s.tokens.len(), sorts.max_tokens());
            assert!(s.answer()[..8].windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn tokenize_inverts_render_and_rejects_unknown_characters() {
        let s = addition(&[5, 7], &[6, 8]);
        assert_eq!(tokenize(&render(&s.tokens)).unwrap(), s.tokens);
        assert_eq!(tokenize("1 2 =").unwrap(), vec![1, 2, EQUALS]);
        let err = tokenize("12*3=").unwrap_err().to_string();
        assert!(err.contains("'*'") && err.contains("position 2"), "{err}");
    }

    #[test]
    fn carry_chain_samples_are_correct_sums_with_longer_lookahead_than_plain_addition() {
        let mean_max = |task| {
            let cfg = ArTaskConfig { task, train_sizes: 6..=6, long_sizes: 7..=7 };
            let samples = cfg.split(Split::Train, 400, 3);
            let num = |d: &[u32]| d.iter().fold(0u64, |acc, &x| acc * 10 + x as u64);
            for s in &samples {
                let (a, b) = (num(&s.tokens[..6]), num(&s.tokens[7..13]));
                assert_eq!(num(&s.answer()[..7]), a + b, "{}", render(&s.tokens));
            }
            let maxes: Vec<u32> =
                samples.iter().map(|s| *s.difficulty.as_ref().unwrap().iter().max().unwrap()).collect();
            maxes.iter().sum::<u32>() as f64 / maxes.len() as f64
        };
        let (plain, chains) = (mean_max(ArTask::Addition), mean_max(ArTask::CarryChains));
        // Plain 6-digit addition rarely has chains (a digit sum of 9 has probability 1/10).
        assert!(chains > plain + 1.0, "carry chains {chains} vs plain {plain}");
    }
}

//! Puzzles with exactly one solution, generated offline for 4x4, 6x6 and 9x9 grids.
//!
//! Method: fill a random complete grid (the solver with a random digit order on an empty
//! grid), then visit the cells in random order and blank each one if the puzzle keeps a
//! unique solution (blanking a cell keeps uniqueness iff no solution exists with a
//! different digit there). Difficulty knobs: stop blanking at `givens` clues (more clues =
//! easier; `None` = remove as many as possible, a minimal puzzle), and reject puzzles whose
//! solver needed fewer than `min_guesses` guesses.
//!
//! Each puzzle `i` uses its own ChaCha8 stream `(seed, i)`, so results do not depend on the
//! number of threads.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::solver::Solver;
use super::{SudokuPuzzle, SudokuShape};

/// Difficulty knobs of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Difficulty {
    /// Stop removing clues at this many (never below what uniqueness allows).
    pub givens: Option<usize>,
    /// Keep only puzzles that needed at least this many solver guesses.
    pub min_guesses: Option<u64>,
}

pub struct Generator {
    shape: SudokuShape,
    solver: Solver,
    difficulty: Difficulty,
    seed: u64,
}

impl Generator {
    pub fn new(shape: SudokuShape, difficulty: Difficulty, seed: u64) -> Self {
        Generator { shape, solver: Solver::new(shape), difficulty, seed }
    }

    /// A random complete grid.
    fn full_grid(&self, rng: &mut ChaCha8Rng) -> Vec<u8> {
        let n = self.shape.size();
        let mut order: Vec<u8> = (1..=n as u8).collect();
        order.shuffle(rng);
        // Also seed a random first row so grids differ beyond the digit order.
        let mut cells = vec![0u8; n * n];
        let mut row: Vec<u8> = (1..=n as u8).collect();
        row.shuffle(rng);
        cells[..n].copy_from_slice(&row);
        self.solver
            .solve(&cells, 1, &order)
            .first
            .unwrap_or_else(|| unreachable!("any permutation row extends to a full grid"))
    }

    /// Puzzle number `index` of this generator's stream; `None` if it was rejected by
    /// `min_guesses` (the caller moves on to the next index).
    pub fn puzzle(&self, index: u64) -> Option<SudokuPuzzle> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let n = self.shape.size();
        let answer = self.full_grid(&mut rng);
        let mut q = answer.clone();
        let mut cells: Vec<usize> = (0..n * n).collect();
        cells.shuffle(&mut rng);
        let target = self.difficulty.givens.unwrap_or(0);
        let mut givens = n * n;
        for i in cells {
            if givens <= target {
                break;
            }
            let d = q[i];
            q[i] = 0;
            // Unique after blanking iff no solution has another digit here.
            let other = (1..=n as u8).filter(|&x| x != d).any(|x| {
                q[i] = x;
                let found = self.solver.solve(&q, 1, &[]).solutions > 0;
                q[i] = 0;
                found
            });
            if other {
                q[i] = d;
            } else {
                givens -= 1;
            }
        }
        let guesses = self.solver.solve(&q, 2, &[]).guesses;
        if guesses < self.difficulty.min_guesses.unwrap_or(0) {
            return None;
        }
        Some(SudokuPuzzle { source: format!("generated-{n}x{n}"), question: q, answer, rating: guesses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sudoku::check_solution;

    #[test]
    fn generated_puzzles_are_unique_and_valid() {
        for n in [4, 6, 9] {
            let shape = SudokuShape::for_size(n).unwrap();
            let g = Generator::new(shape, Difficulty::default(), 1);
            let s = Solver::new(shape);
            for i in 0..5 {
                let p = g.puzzle(i).unwrap();
                check_solution(shape, &p.question, &p.answer).unwrap();
                let r = s.solve(&p.question, 2, &[]);
                assert_eq!(r.solutions, 1, "{n}x{n} puzzle {i}");
                assert_eq!(r.first.unwrap(), p.answer);
                // Minimal: every remaining given is needed.
                for k in 0..n * n {
                    if p.question[k] != 0 {
                        let mut q = p.question.clone();
                        q[k] = 0;
                        assert!(!s.is_unique(&q), "{n}x{n} puzzle {i} is not minimal at {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn givens_knob_and_determinism() {
        let shape = SudokuShape::for_size(9).unwrap();
        let g = Generator::new(shape, Difficulty { givens: Some(40), min_guesses: None }, 5);
        let p = g.puzzle(3).unwrap();
        assert_eq!(p.question.iter().filter(|&&v| v != 0).count(), 40);
        assert_eq!(g.puzzle(3), Some(p));
        assert_ne!(g.puzzle(4).unwrap().answer, g.puzzle(3).unwrap().answer);
    }
}

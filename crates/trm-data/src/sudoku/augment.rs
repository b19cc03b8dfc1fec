//! The official Sudoku augmentation (`shuffle_sudoku` in `build_sudoku_dataset.py`),
//! generalised to 4x4 and 6x6 boxes and drawing from the same NumPy stream.
//!
//! Per copy, in this order: a permutation of the digits 1..=n (blank kept); a coin
//! `rand() < 0.5` for transposing (applied first); a permutation of the bands and, band by
//! band, of the rows inside it; the same for stacks and columns. New cell (i, j) takes old
//! cell `(row_perm[i], col_perm[j])` of the (possibly transposed) grid, then the digit map.
//!
//! 6x6 boxes are 2 rows x 3 columns; transposing would make them 3 x 2, which is not a 6x6
//! Sudoku of the same shape, so for non-square boxes the coin is still drawn (to keep the
//! stream aligned with the 9x9 procedure) but ignored.

use super::SudokuShape;
use crate::numpy_rng::NumpyRng;

/// One drawn augmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudokuTransform {
    /// `digit_map[v]` replaces value v (index 0, blank, maps to 0).
    pub digit_map: Vec<u8>,
    pub transpose: bool,
    pub row_perm: Vec<usize>,
    pub col_perm: Vec<usize>,
}

impl SudokuTransform {
    /// Draw a transform exactly as `shuffle_sudoku` does.
    pub fn draw(rng: &mut NumpyRng, shape: SudokuShape) -> Self {
        let n = shape.size();
        let mut digits: Vec<u8> = (1..=n as u8).collect();
        rng.shuffle(&mut digits);
        let mut digit_map = vec![0u8];
        digit_map.extend(digits);
        let coin = rng.rand() < 0.5;
        let transpose = coin && shape.box_rows == shape.box_cols;
        let perm_lines = |rng: &mut NumpyRng, block: usize| -> Vec<usize> {
            let blocks = rng.permutation(n / block);
            let mut out = Vec::with_capacity(n);
            for b in blocks {
                out.extend(rng.permutation(block).into_iter().map(|k| b * block + k));
            }
            out
        };
        let row_perm = perm_lines(rng, shape.box_rows);
        let col_perm = perm_lines(rng, shape.box_cols);
        SudokuTransform { digit_map, transpose, row_perm, col_perm }
    }

    /// Apply to a grid of cells (0 blank, 1..=n).
    pub fn apply(&self, cells: &[u8]) -> Vec<u8> {
        let n = self.row_perm.len();
        let mut out = Vec::with_capacity(n * n);
        for i in 0..n {
            for j in 0..n {
                let (r, c) = (self.row_perm[i], self.col_perm[j]);
                let v = if self.transpose { cells[c * n + r] } else { cells[r * n + c] };
                out.push(self.digit_map[v as usize]);
            }
        }
        out
    }
}

/// `shuffle_sudoku(board, solution)`: draw one transform and apply it to both.
pub fn shuffle_sudoku(rng: &mut NumpyRng, shape: SudokuShape, board: &[u8], solution: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let t = SudokuTransform::draw(rng, shape);
    (t.apply(board), t.apply(solution))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sudoku::check_solution;

    // Reference from NumPy 2.4.6 running the official shuffle_sudoku after
    // np.random.seed(0) on the magictour puzzle below (first row of the output grids).
    #[test]
    fn matches_official_shuffle_first_draw() {
        let shape = SudokuShape::for_size(9).unwrap();
        let a: Vec<u8> = "468931527751624839392578461134756298289413675675289314846192753513867942927345186"
            .bytes()
            .map(|b| b - b'0')
            .collect();
        let mut rng = NumpyRng::new(0);
        let t = SudokuTransform::draw(&mut rng, shape);
        let out = t.apply(&a);
        assert_eq!(out[..9], SHUFFLED_FIRST_ROW);
        check_solution(shape, &t.apply(&a), &out).unwrap();
    }

    const SHUFFLED_FIRST_ROW: [u8; 9] = [8, 9, 2, 1, 4, 7, 6, 3, 5];

    #[test]
    fn small_shapes_stay_valid() {
        let s6 = SudokuShape::for_size(6).unwrap();
        // A valid 6x6 solution (boxes 2x3).
        let g: Vec<u8> = "123456456123231564564231312645645312".bytes().map(|b| b - b'0').collect();
        check_solution(s6, &g, &g).unwrap();
        let mut rng = NumpyRng::new(7);
        for _ in 0..50 {
            let t = SudokuTransform::draw(&mut rng, s6);
            assert!(!t.transpose);
            let h = t.apply(&g);
            check_solution(s6, &h, &h).unwrap();
        }
    }
}

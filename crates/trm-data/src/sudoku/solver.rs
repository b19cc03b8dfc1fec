//! A bitmask Sudoku solver for n x n grids (n <= 9): naked and hidden singles, then
//! branching on the cell with the fewest candidates. It counts solutions up to a limit
//! (2 is enough to prove uniqueness) and how many guesses that took, which is the
//! generator's difficulty measure.

use super::SudokuShape;

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SolveResult {
    /// Solutions found, at most the requested limit.
    pub solutions: usize,
    /// The first solution found (cells 1..=n).
    pub first: Option<Vec<u8>>,
    /// Digits tried at branching cells over the whole search.
    pub guesses: u64,
}

/// Precomputed units (rows, columns, boxes) and the units of each cell for one shape.
#[derive(Debug, Clone)]
pub struct Solver {
    n: usize,
    full: u16,
    units: Vec<Vec<usize>>,
    cell_units: Vec<[usize; 3]>,
}

#[derive(Clone)]
struct State {
    cells: [u8; 81],
    used: [u16; 27],
}

impl Solver {
    pub fn new(shape: SudokuShape) -> Self {
        let n = shape.size();
        let mut units = vec![Vec::new(); 3 * n];
        let mut cell_units = vec![[0; 3]; n * n];
        for r in 0..n {
            for c in 0..n {
                let b = shape.box_of(r, c);
                let i = r * n + c;
                units[r].push(i);
                units[n + c].push(i);
                units[2 * n + b].push(i);
                cell_units[i] = [r, n + c, 2 * n + b];
            }
        }
        Solver { n, full: ((1u32 << n) - 1) as u16, units, cell_units }
    }

    fn place(&self, s: &mut State, i: usize, d: u8) {
        s.cells[i] = d;
        let bit = 1u16 << (d - 1);
        for &u in &self.cell_units[i] {
            s.used[u] |= bit;
        }
    }

    fn candidates(&self, s: &State, i: usize) -> u16 {
        let [a, b, c] = self.cell_units[i];
        self.full & !(s.used[a] | s.used[b] | s.used[c])
    }

    /// Initial state from cells (0 = blank); `None` if the givens already clash or a value
    /// is out of range.
    fn init(&self, cells: &[u8]) -> Option<State> {
        if cells.len() != self.n * self.n {
            return None;
        }
        let mut s = State { cells: [0; 81], used: [0; 27] };
        for (i, &d) in cells.iter().enumerate() {
            if d == 0 {
                continue;
            }
            if d as usize > self.n || self.candidates(&s, i) & (1 << (d - 1)) == 0 {
                return None;
            }
            self.place(&mut s, i, d);
        }
        Some(s)
    }

    /// Count solutions up to `limit`. `order` (a permutation of digits 1..=n, or empty
    /// for ascending) sets the branching order, which the generator randomises.
    pub fn solve(&self, cells: &[u8], limit: usize, order: &[u8]) -> SolveResult {
        let mut res = SolveResult { solutions: 0, first: None, guesses: 0 };
        if let Some(s) = self.init(cells) {
            self.search(s, limit, order, &mut res);
        }
        res
    }

    /// Whether the puzzle has exactly one solution.
    pub fn is_unique(&self, cells: &[u8]) -> bool {
        self.solve(cells, 2, &[]).solutions == 1
    }

    /// Fill singles until none is left. `false` on a contradiction.
    fn propagate(&self, s: &mut State) -> bool {
        let n = self.n;
        loop {
            let mut progress = false;
            for i in 0..n * n {
                if s.cells[i] != 0 {
                    continue;
                }
                let c = self.candidates(s, i);
                if c == 0 {
                    return false;
                }
                if c.is_power_of_two() {
                    self.place(s, i, c.trailing_zeros() as u8 + 1);
                    progress = true;
                }
            }
            for unit in &self.units {
                // Digits that can go in exactly one / at least one empty cell of the unit.
                let (mut once, mut twice) = (0u16, 0u16);
                let mut placed = 0u16;
                for &i in unit {
                    if s.cells[i] != 0 {
                        placed |= 1 << (s.cells[i] - 1);
                        continue;
                    }
                    let c = self.candidates(s, i);
                    twice |= once & c;
                    once |= c;
                }
                if (once | placed) != self.full {
                    return false; // some digit has no place left in this unit
                }
                let hidden = once & !twice & !placed;
                if hidden != 0 {
                    for &i in unit {
                        if s.cells[i] == 0 {
                            let c = self.candidates(s, i) & hidden;
                            if c != 0 {
                                if !c.is_power_of_two() {
                                    return false; // two digits forced into one cell
                                }
                                self.place(s, i, c.trailing_zeros() as u8 + 1);
                            }
                        }
                    }
                    progress = true;
                }
            }
            if !progress {
                return true;
            }
        }
    }

    fn search(&self, mut s: State, limit: usize, order: &[u8], res: &mut SolveResult) {
        if !self.propagate(&mut s) {
            return;
        }
        let n = self.n;
        let mut best = usize::MAX;
        let mut best_count = u32::MAX;
        for i in 0..n * n {
            if s.cells[i] == 0 {
                let k = self.candidates(&s, i).count_ones();
                if k < best_count {
                    best_count = k;
                    best = i;
                    if k == 2 {
                        break;
                    }
                }
            }
        }
        if best == usize::MAX {
            res.solutions += 1;
            if res.first.is_none() {
                res.first = Some(s.cells[..n * n].to_vec());
            }
            return;
        }
        let cand = self.candidates(&s, best);
        let digits: Vec<u8> = if order.is_empty() { (1..=n as u8).collect() } else { order.to_vec() };
        for d in digits {
            if cand & (1 << (d - 1)) == 0 {
                continue;
            }
            res.guesses += 1;
            let mut t = s.clone();
            self.place(&mut t, best, d);
            self.search(t, limit, order, res);
            if res.solutions >= limit {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sudoku::parse_grid;

    #[test]
    fn solves_known_puzzle_uniquely() {
        // First row of tdoku's puzzles3_magictour_top1465 and its published solution.
        let q =
            parse_grid("4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........", 9).unwrap();
        let a = "468931527751624839392578461134756298289413675675289314846192753513867942927345186";
        let r = Solver::new(SudokuShape::for_size(9).unwrap()).solve(&q, 2, &[]);
        assert_eq!(r.solutions, 1);
        let got: String = r.first.unwrap().iter().map(|d| (b'0' + d) as char).collect();
        assert_eq!(got, a);
    }

    #[test]
    fn counts_multiple_and_zero() {
        let s = Solver::new(SudokuShape::for_size(4).unwrap());
        // An empty 4x4 grid has 288 solutions.
        assert_eq!(s.solve(&[0; 16], 1000, &[]).solutions, 288);
        assert_eq!(s.solve(&[0; 16], 2, &[]).solutions, 2);
        // Two 1s in the first row: no solution.
        let mut bad = [0u8; 16];
        bad[0] = 1;
        bad[1] = 1;
        assert_eq!(s.solve(&bad, 2, &[]).solutions, 0);
        // An empty 6x6 grid has 28,200,960 solutions; just check the search finds several.
        let s6 = Solver::new(SudokuShape::for_size(6).unwrap());
        assert_eq!(s6.solve(&[0; 36], 5, &[]).solutions, 5);
    }
}

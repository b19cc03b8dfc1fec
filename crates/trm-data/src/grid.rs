//! Row-major grids and the 8 dihedral transforms of the official `dataset/common.py`.

/// A rectangular grid of bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    pub cells: Vec<u8>,
}

/// Inverse of each dihedral id: `DIHEDRAL_INVERSE[t]` undoes transform `t`.
pub const DIHEDRAL_INVERSE: [u8; 8] = [0, 3, 2, 1, 4, 5, 6, 7];

impl Grid {
    pub fn new(rows: usize, cols: usize, cells: Vec<u8>) -> Self {
        debug_assert_eq!(rows * cols, cells.len());
        Grid { rows, cols, cells }
    }

    pub fn get(&self, r: usize, c: usize) -> u8 {
        self.cells[r * self.cols + c]
    }

    /// Apply dihedral transform `tid` (ids as in `dataset/common.py`):
    /// 0 identity, 1 `rot90` (counter-clockwise), 2 `rot90(k=2)`, 3 `rot90(k=3)`,
    /// 4 `fliplr`, 5 `flipud`, 6 transpose, 7 `fliplr(rot90)` (anti-transpose).
    /// Ids above 7 are the identity, as in the Python code.
    pub fn dihedral(&self, tid: u8) -> Grid {
        let (h, w) = (self.rows, self.cols);
        let swap = matches!(tid, 1 | 3 | 6 | 7);
        let (nr, nc) = if swap { (w, h) } else { (h, w) };
        let mut cells = Vec::with_capacity(h * w);
        for i in 0..nr {
            for j in 0..nc {
                // (r, c) in the source grid that lands at (i, j).
                let (r, c) = match tid {
                    1 => (j, w - 1 - i),
                    2 => (h - 1 - i, w - 1 - j),
                    3 => (h - 1 - j, i),
                    4 => (i, w - 1 - j),
                    5 => (h - 1 - i, j),
                    6 => (j, i),
                    7 => (h - 1 - j, w - 1 - i),
                    _ => (i, j),
                };
                cells.push(self.cells[r * w + c]);
            }
        }
        Grid::new(nr, nc, cells)
    }

    /// Undo `dihedral(tid)`.
    pub fn inverse_dihedral(&self, tid: u8) -> Grid {
        self.dihedral(DIHEDRAL_INVERSE.get(tid as usize).copied().unwrap_or(0))
    }

    /// Replace every cell `v` by `map[v]`.
    pub fn map_values(&self, map: &[u8]) -> Grid {
        Grid::new(self.rows, self.cols, self.cells.iter().map(|&v| map[v as usize]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // m = [[1,2,3],[4,5,6]]; expected results printed by NumPy for each transform.
    #[test]
    fn dihedral_matches_numpy() {
        let m = Grid::new(2, 3, vec![1, 2, 3, 4, 5, 6]);
        let expect: [(usize, usize, [u8; 6]); 8] = [
            (2, 3, [1, 2, 3, 4, 5, 6]),
            (3, 2, [3, 6, 2, 5, 1, 4]), // np.rot90(m)
            (2, 3, [6, 5, 4, 3, 2, 1]), // np.rot90(m, 2)
            (3, 2, [4, 1, 5, 2, 6, 3]), // np.rot90(m, 3)
            (2, 3, [3, 2, 1, 6, 5, 4]), // np.fliplr(m)
            (2, 3, [4, 5, 6, 1, 2, 3]), // np.flipud(m)
            (3, 2, [1, 4, 2, 5, 3, 6]), // m.T
            (3, 2, [6, 3, 5, 2, 4, 1]), // np.fliplr(np.rot90(m))
        ];
        for (t, (r, c, cells)) in expect.iter().enumerate() {
            let g = m.dihedral(t as u8);
            assert_eq!((g.rows, g.cols, g.cells.as_slice()), (*r, *c, &cells[..]), "tid {t}");
            assert_eq!(g.inverse_dihedral(t as u8), m, "inverse of {t}");
        }
    }
}

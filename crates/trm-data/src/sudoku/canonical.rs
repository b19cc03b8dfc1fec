//! A canonical form of a Sudoku under the augmentation group (digit relabelling,
//! transpose for square boxes, band/row and stack/column permutations): two puzzles are
//! equivalent exactly when their canonical forms are equal. `sudoku-hard` uses it to keep
//! every test puzzle inequivalent to every training puzzle.
//!
//! Method (exact, no hashing): the canonical form is the lexicographically smallest
//! relabelled grid among the transforms whose pattern of givens is smallest.
//! 1. For each transpose choice and each column map (stack order x column order inside the
//!    stacks), the smallest row ordering of the givens pattern is found by sorting: rows
//!    inside a band sort ascending, and bands sort by their sorted row tuples. This gives the
//!    minimal pattern over the whole group without enumerating row maps.
//! 2. For the (usually one or few) transforms that reach the minimal pattern, including
//!    row orders tied on the pattern, the grid is relabelled by order of first appearance
//!    (which removes the digit permutation), and the smallest string wins.
//!
//! The minimal pattern is a class invariant and relabelling removes digit maps, so equal
//! forms mean equivalent puzzles and vice versa.

use super::SudokuShape;

pub struct Canonicalizer {
    n: usize,
    box_rows: usize,
    transposes: Vec<bool>,
    /// `col_maps[k][j]` = source column of new column j.
    col_maps: Vec<Vec<usize>>,
    /// `tables[k * 2^n + mask]` = the row mask after column map k.
    tables: Vec<u16>,
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x);
            out.push(p);
        }
    }
    out
}

/// All orders of `items` that sort them by `key` (ties permuted every way).
fn sorting_orders<K: Ord + Clone>(items: &[usize], key: impl Fn(usize) -> K) -> Vec<Vec<usize>> {
    let mut sorted = items.to_vec();
    sorted.sort_by_key(|&i| key(i));
    let mut orders: Vec<Vec<usize>> = vec![Vec::new()];
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start + 1;
        while end < sorted.len() && key(sorted[end]) == key(sorted[start]) {
            end += 1;
        }
        let perms = permutations(&sorted[start..end]);
        orders = orders
            .iter()
            .flat_map(|o| {
                perms.iter().map(move |p| {
                    let mut v = o.clone();
                    v.extend(p);
                    v
                })
            })
            .collect();
        start = end;
    }
    orders
}

impl Canonicalizer {
    pub fn new(shape: SudokuShape) -> Self {
        let n = shape.size();
        let stacks = n / shape.box_cols;
        let mut col_maps = Vec::new();
        let inner = permutations(&(0..shape.box_cols).collect::<Vec<_>>());
        for order in permutations(&(0..stacks).collect::<Vec<_>>()) {
            // Every combination of an inner permutation per stack.
            let mut maps: Vec<Vec<usize>> = vec![Vec::new()];
            for &s in &order {
                maps = maps
                    .iter()
                    .flat_map(|m| {
                        inner.iter().map(move |p| {
                            let mut v = m.clone();
                            v.extend(p.iter().map(|k| s * shape.box_cols + k));
                            v
                        })
                    })
                    .collect();
            }
            col_maps.extend(maps);
        }
        let size = 1usize << n;
        let mut tables = vec![0u16; col_maps.len() * size];
        for (k, map) in col_maps.iter().enumerate() {
            for mask in 0..size {
                let mut m = 0u16;
                for (j, &src) in map.iter().enumerate() {
                    if mask & (1 << src) != 0 {
                        m |= 1 << (n - 1 - j); // column 0 is the most significant bit
                    }
                }
                tables[k * size + mask] = m;
            }
        }
        Canonicalizer {
            n,
            box_rows: shape.box_rows,
            transposes: if shape.box_rows == shape.box_cols { vec![false, true] } else { vec![false] },
            col_maps,
            tables,
        }
    }

    /// The canonical form of `cells` (0 blank, 1..=n).
    pub fn canonical(&self, cells: &[u8]) -> Vec<u8> {
        let n = self.n;
        let size = 1usize << n;
        let bands = n / self.box_rows;
        // Pass 1 on fixed-size arrays (this loop runs 2 x 1296 times for 9x9).
        let mut best = [u16::MAX; 9];
        let mut ties: Vec<(Vec<u8>, usize)> = Vec::new();
        for &t in &self.transposes {
            let g: Vec<u8> = if t { (0..n * n).map(|i| cells[(i % n) * n + i / n]).collect() } else { cells.to_vec() };
            let mut rowmask = [0usize; 9];
            for (r, m) in rowmask.iter_mut().enumerate().take(n) {
                *m = (0..n).filter(|&c| g[r * n + c] != 0).map(|c| 1 << c).sum();
            }
            for k in 0..self.col_maps.len() {
                let table = &self.tables[k * size..(k + 1) * size];
                let mut bk = [[0u16; 3]; 9];
                for (b, keyb) in bk.iter_mut().enumerate().take(bands) {
                    for (i, slot) in keyb.iter_mut().enumerate().take(self.box_rows) {
                        *slot = table[rowmask[b * self.box_rows + i]];
                    }
                    keyb[..self.box_rows].sort_unstable();
                }
                bk[..bands].sort_unstable();
                let mut key = [u16::MAX; 9];
                for b in 0..bands {
                    key[b * self.box_rows..(b + 1) * self.box_rows].copy_from_slice(&bk[b][..self.box_rows]);
                }
                match key.cmp(&best) {
                    std::cmp::Ordering::Greater => {}
                    std::cmp::Ordering::Equal => ties.push((g.clone(), k)),
                    std::cmp::Ordering::Less => {
                        best = key;
                        ties.clear();
                        ties.push((g.clone(), k));
                    }
                }
            }
        }
        let mut result: Option<Vec<u8>> = None;
        for (g, k) in &ties {
            let cmap = &self.col_maps[*k];
            let m: Vec<u16> = (0..n)
                .map(|r| {
                    let rm: usize = (0..n).filter(|&c| g[r * n + c] != 0).map(|c| 1 << c).sum();
                    self.tables[k * size + rm]
                })
                .collect();
            let band_rows: Vec<Vec<usize>> =
                (0..bands).map(|b| (b * self.box_rows..(b + 1) * self.box_rows).collect()).collect();
            let sorted_band = |b: usize| {
                let mut v: Vec<u16> = band_rows[b].iter().map(|&r| m[r]).collect();
                v.sort_unstable();
                v
            };
            let band_orders = sorting_orders(&(0..bands).collect::<Vec<_>>(), sorted_band);
            let row_orders: Vec<Vec<Vec<usize>>> =
                band_rows.iter().map(|rows| sorting_orders(rows, |r| m[r])).collect();
            for bo in &band_orders {
                // Cartesian product of the row orders of the bands, in band order `bo`.
                let mut full: Vec<Vec<usize>> = vec![Vec::new()];
                for &b in bo {
                    full = full
                        .iter()
                        .flat_map(|f| {
                            row_orders[b].iter().map(move |ro| {
                                let mut v = f.clone();
                                v.extend(ro);
                                v
                            })
                        })
                        .collect();
                }
                for rows in full {
                    let mut label = [0u8; 10];
                    let mut next = 1u8;
                    let mut s = Vec::with_capacity(n * n);
                    for &r in &rows {
                        for &c in cmap {
                            let v = g[r * n + c] as usize;
                            if v != 0 && label[v] == 0 {
                                label[v] = next;
                                next += 1;
                            }
                            s.push(label[v]);
                        }
                    }
                    if result.as_ref().is_none_or(|b| s < *b) {
                        result = Some(s);
                    }
                }
            }
        }
        result.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numpy_rng::NumpyRng;
    use crate::sudoku::augment::SudokuTransform;
    use crate::sudoku::solver::Solver;
    use std::collections::HashSet;

    /// Enumerate all complete grids of a shape with the solver (no shortcuts).
    fn all_grids(shape: SudokuShape) -> Vec<Vec<u8>> {
        let n = shape.size();
        let solver = Solver::new(shape);
        let mut out = Vec::new();
        let mut stack = vec![vec![0u8; n * n]];
        while let Some(g) = stack.pop() {
            let Some(i) = g.iter().position(|&v| v == 0) else {
                out.push(g);
                continue;
            };
            for d in 1..=n as u8 {
                let mut h = g.clone();
                h[i] = d;
                if solver.solve(&h, 1, &[]).solutions == 1 {
                    stack.push(h);
                }
            }
        }
        out
    }

    // Known: 288 complete 4x4 grids, and exactly 2 essentially different ones.
    #[test]
    fn four_by_four_has_two_classes_of_grids() {
        let shape = SudokuShape::for_size(4).unwrap();
        let grids = all_grids(shape);
        assert_eq!(grids.len(), 288);
        let c = Canonicalizer::new(shape);
        let classes: HashSet<Vec<u8>> = grids.iter().map(|g| c.canonical(g)).collect();
        assert_eq!(classes.len(), 2);
    }

    #[test]
    fn augmented_copies_share_the_form() {
        let shape = SudokuShape::for_size(9).unwrap();
        let q: Vec<u8> = "4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........"
            .bytes()
            .map(|b| if b == b'.' { 0 } else { b - b'0' })
            .collect();
        let c = Canonicalizer::new(shape);
        let base = c.canonical(&q);
        let mut rng = NumpyRng::new(3);
        for _ in 0..20 {
            let t = SudokuTransform::draw(&mut rng, shape);
            assert_eq!(c.canonical(&t.apply(&q)), base);
        }
        // Every digit appears twice among the givens; turning a 4 into a 1 makes a puzzle
        // with a digit three times, which no relabelling or permutation can undo.
        let mut q2 = q.clone();
        q2[0] = 1;
        assert_ne!(c.canonical(&q2), base);
    }
}

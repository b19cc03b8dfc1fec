//! Maze-Hard style generator, restated from the recipe in `shared/data/maze/PROVENANCE.md`
//! (Searchformer's random-wall mazes filtered by path length), in our own code:
//!
//! 1. side x side grid, no border ring (outside counts as blocked). Shuffle the cells and
//!    make the first `w` walls, `w` uniform in [(N/10)*3, (N/10)*5], N = side*side
//!    (270..450 for 30x30): scattered walls, not a carved maze.
//! 2. Up to 100 attempts per wall layout: a random ordered pair of distinct free cells is
//!    (start, goal); the attempt fails without a path or with fewer than max(side, side)
//!    moves, or (our "hard" filter) fewer than `min_path_len` moves.
//! 3. The first successful attempt of a layout is kept: one maze per layout, so layouts,
//!    and therefore train and test, never share walls.
//!
//! Layout `i` uses its own ChaCha8 stream `(seed, i)`, independent of threads.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{shortest_path, MazePuzzle};

pub struct MazeGenerator {
    pub side: usize,
    pub min_path_len: usize,
    pub seed: u64,
}

impl MazeGenerator {
    /// The maze of layout `index`, or `None` if no attempt met the length filter.
    pub fn layout(&self, index: u64) -> Option<MazePuzzle> {
        let side = self.side;
        let n = side * side;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index);
        let mut cells: Vec<usize> = (0..n).collect();
        cells.shuffle(&mut rng);
        let walls = rng.gen_range((n / 10) * 3..=(n / 10) * 5).min(n.saturating_sub(2));
        let mut grid = vec![b' '; n];
        for &i in &cells[..walls] {
            grid[i] = b'#';
        }
        let free = &cells[walls..];
        if free.len() < 2 {
            return None;
        }
        let min_moves = self.min_path_len.max(side);
        for _ in 0..100 {
            let s = free[rng.gen_range(0..free.len())];
            let mut g = free[rng.gen_range(0..free.len() - 1)];
            if g == s {
                g = free[free.len() - 1]; // distinct goal, still uniform over the others
            }
            let mut q = grid.clone();
            q[s] = b'S';
            q[g] = b'G';
            let Some(path) = shortest_path(&q, side) else { continue };
            let moves = path.len() - 1;
            if moves < min_moves {
                continue;
            }
            let mut a = q.clone();
            for &i in &path[1..path.len() - 1] {
                a[i] = b'o';
            }
            return Some(MazePuzzle {
                side,
                question: q,
                answer: a,
                rating: moves as u64,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maze::check_row;

    #[test]
    fn generated_mazes_are_valid_and_long_enough() {
        let g = MazeGenerator { side: 9, min_path_len: 12, seed: 3 };
        let mazes: Vec<_> = (0..200).filter_map(|i| g.layout(i)).collect();
        assert!(mazes.len() > 10, "only {} of 200 layouts", mazes.len());
        for m in &mazes {
            check_row(&m.question, &m.answer, 9).unwrap();
            assert!(m.rating >= 12);
            let walls = m.question.iter().filter(|&&c| c == b'#').count();
            assert!((24..=40).contains(&walls), "{walls} walls");
        }
        assert_eq!(g.layout(5), g.layout(5));
    }
}

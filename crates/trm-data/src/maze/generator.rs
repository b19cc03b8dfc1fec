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
        // Connected components of the free cells: an attempt whose start and goal are in
        // different components, or in one too small to hold a long enough path, fails
        // exactly as its BFS would, so it is rejected without the BFS (same outcomes,
        // many times faster at Maze-Hard lengths).
        let (comp, comp_size) = components(&grid, side);
        // Triangle-inequality bound: with BFS distances d1, d2 from two cells of a component
        // (a double sweep), dist(s, g) <= min(d1[s] + d1[g], d2[s] + d2[g]); attempts
        // below the length are rejected without their own BFS. Outcomes are unchanged.
        let mut sweeps: Vec<Option<(Vec<u16>, Vec<u16>)>> = vec![None; comp_size.len()];
        for _ in 0..100 {
            let s = free[rng.gen_range(0..free.len())];
            let mut g = free[rng.gen_range(0..free.len() - 1)];
            if g == s {
                g = free[free.len() - 1]; // distinct goal, still uniform over the others
            }
            let k = comp[s];
            if comp[g] != k || comp_size[k] <= min_moves {
                continue;
            }
            let (d1, d2) = sweeps[k].get_or_insert_with(|| {
                let d1 = bfs_all(&grid, side, s);
                let far = (0..grid.len()).filter(|&i| d1[i] != u16::MAX).max_by_key(|&i| d1[i]).unwrap_or(s);
                (d1, bfs_all(&grid, side, far))
            });
            let bound = (d1[s] as usize + d1[g] as usize).min(d2[s] as usize + d2[g] as usize);
            if bound < min_moves {
                continue;
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
            return Some(MazePuzzle { side, question: q, answer: a, rating: moves as u64 });
        }
        None
    }
}

/// BFS distances from `src` over non-wall cells (`u16::MAX` = unreachable).
fn bfs_all(grid: &[u8], side: usize, src: usize) -> Vec<u16> {
    let mut dist = vec![u16::MAX; grid.len()];
    let mut queue = Vec::with_capacity(grid.len());
    dist[src] = 0;
    queue.push(src);
    let mut head = 0;
    while head < queue.len() {
        let i = queue[head];
        head += 1;
        let (r, c) = (i / side, i % side);
        let d = dist[i] + 1;
        for j in [
            (r + 1 < side).then(|| i + side),
            (c > 0).then(|| i - 1),
            (c + 1 < side).then(|| i + 1),
            (r > 0).then(|| i - side),
        ]
        .into_iter()
        .flatten()
        {
            if grid[j] != b'#' && dist[j] == u16::MAX {
                dist[j] = d;
                queue.push(j);
            }
        }
    }
    dist
}

/// Component label of every free cell (walls get `usize::MAX`) and the size of each.
fn components(grid: &[u8], side: usize) -> (Vec<usize>, Vec<usize>) {
    let mut comp = vec![usize::MAX; grid.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..grid.len() {
        if grid[start] == b'#' || comp[start] != usize::MAX {
            continue;
        }
        let label = sizes.len();
        let mut size = 0;
        comp[start] = label;
        stack.push(start);
        while let Some(i) = stack.pop() {
            size += 1;
            for j in super::neighbours(i, side).into_iter().flatten() {
                if grid[j] != b'#' && comp[j] == usize::MAX {
                    comp[j] = label;
                    stack.push(j);
                }
            }
        }
        sizes.push(size);
    }
    (comp, sizes)
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

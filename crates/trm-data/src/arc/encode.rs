//! The 30x30 token encoding, the evaluator's crop, and augmentations with their inverses.
//!
//! Tokens: PAD 0, EOS 1, colour c -> c + 2. A grid sits at offset (pad_r, pad_c); EOS is
//! written on the row just below it (over its columns) and the column just right of it
//! (over its rows) when those fall inside the canvas; the corner cell stays PAD.

use crate::grid::Grid;

use super::MAX_SIDE;

/// Tokens per encoded grid.
pub const SEQ_LEN: usize = MAX_SIDE * MAX_SIDE;
/// PAD + EOS + 10 colours.
pub const VOCAB_SIZE: usize = 12;
/// Separator inside augmented identifier names: `{task}|||t{tid}|||{perm}`.
pub const SEPARATOR: &str = "|||";

/// Write `grid` (colours 0..=9) into `canvas` (900 tokens, all PAD) at the offset.
pub fn encode_into(grid: &Grid, pad_r: usize, pad_c: usize, canvas: &mut [u8]) {
    for r in 0..grid.rows {
        let row = &grid.cells[r * grid.cols..(r + 1) * grid.cols];
        let at = (pad_r + r) * MAX_SIDE + pad_c;
        for (k, &v) in row.iter().enumerate() {
            canvas[at + k] = v + 2;
        }
    }
    let (eos_r, eos_c) = (pad_r + grid.rows, pad_c + grid.cols);
    if eos_r < MAX_SIDE {
        canvas[eos_r * MAX_SIDE + pad_c..eos_r * MAX_SIDE + eos_c].fill(1);
    }
    if eos_c < MAX_SIDE {
        for r in pad_r..eos_r {
            canvas[r * MAX_SIDE + eos_c] = 1;
        }
    }
}

/// Encode a grid at the top-left corner.
pub fn encode(grid: &Grid) -> Vec<u8> {
    let mut c = vec![0u8; SEQ_LEN];
    encode_into(grid, 0, 0, &mut c);
    c
}

/// The official evaluator's `_crop`: going down the rows from the top-left, the usable
/// width shrinks to the first non-colour token of each row; the (rows x width) rectangle of
/// largest area wins (first one on ties); colours are shifted back to 0..=9. A canvas
/// starting with a non-colour gives an empty grid. Shorter inputs are treated as padded.
pub fn crop(tokens: &[u8]) -> Grid {
    let at = |i: usize| tokens.get(i).copied().unwrap_or(0);
    let mut best = (0usize, 0usize, 0usize); // area, rows, cols
    let mut num_c = MAX_SIDE;
    for num_r in 1..=MAX_SIDE {
        for c in 1..=num_c {
            let x = at((num_r - 1) * MAX_SIDE + c - 1);
            if !(2..=11).contains(&x) {
                num_c = c - 1;
                break;
            }
        }
        let area = num_r * num_c;
        if area > best.0 {
            best = (area, num_r, num_c);
        }
    }
    let (_, rows, cols) = best;
    let mut cells = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            cells.push(at(r * MAX_SIDE + c) - 2);
        }
    }
    Grid::new(rows, cols, cells)
}

/// One augmentation: colour map (`perm[c]` replaces colour c; `perm[0] == 0`), then
/// dihedral transform `tid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArcAug {
    pub tid: u8,
    pub perm: [u8; 10],
}

impl ArcAug {
    pub const IDENTITY: ArcAug = ArcAug { tid: 0, perm: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] };

    /// Apply to a grid of colours.
    pub fn apply(&self, g: &Grid) -> Grid {
        g.map_values(&self.perm).dihedral(self.tid)
    }

    /// Undo [`Self::apply`]: inverse dihedral, then inverse colour map.
    pub fn invert(&self, g: &Grid) -> Grid {
        let mut inv = [0u8; 10];
        for (c, &p) in self.perm.iter().enumerate() {
            inv[p as usize] = c as u8;
        }
        g.inverse_dihedral(self.tid).map_values(&inv)
    }

    /// The identifier name of this version of `task`: `{task}|||t{tid}|||{perm digits}`.
    pub fn name(&self, task: &str) -> String {
        let digits: String = self.perm.iter().map(|d| (b'0' + d) as char).collect();
        format!("{task}{SEPARATOR}t{}{SEPARATOR}{digits}", self.tid)
    }
}

/// Split an identifier name into the task and its augmentation (`None` for the original,
/// or for `<blank>`). Names that look augmented but do not parse are errors.
pub fn parse_identifier(name: &str) -> Result<(String, Option<ArcAug>), String> {
    let parts: Vec<&str> = name.split(SEPARATOR).collect();
    if parts.len() == 1 {
        return Ok((name.to_owned(), None));
    }
    let [task, t, perm] = parts[..] else {
        return Err(format!("identifier {name:?} has {} parts, expected 3", parts.len()));
    };
    let tid = t
        .strip_prefix('t')
        .and_then(|x| x.parse::<u8>().ok())
        .filter(|&x| x < 8)
        .ok_or_else(|| format!("identifier {name:?}: bad transform {t:?}"))?;
    let bytes = perm.as_bytes();
    let mut p = [0u8; 10];
    let mut seen = [false; 10];
    if bytes.len() != 10 {
        return Err(format!("identifier {name:?}: colour map {perm:?} is not 10 digits"));
    }
    for (k, &b) in bytes.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d > 9 || seen[d as usize] {
            return Err(format!("identifier {name:?}: colour map {perm:?} is not a permutation of 0-9"));
        }
        seen[d as usize] = true;
        p[k] = d;
    }
    Ok((task.to_owned(), Some(ArcAug { tid, perm: p })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_layout_matches_the_official_encoding() {
        // A 2x3 grid at (1, 2): colours +2, EOS below over columns 2..5 and right over rows 1..3.
        let g = Grid::new(2, 3, vec![0, 1, 2, 3, 4, 9]);
        let mut c = vec![0u8; SEQ_LEN];
        encode_into(&g, 1, 2, &mut c);
        assert_eq!(&c[30..36], &[0, 0, 2, 3, 4, 1]);
        assert_eq!(&c[60..66], &[0, 0, 5, 6, 11, 1]);
        assert_eq!(&c[90..96], &[0, 0, 1, 1, 1, 0]); // corner stays PAD
        assert_eq!(c.iter().filter(|&&t| t == 1).count(), 5);
        // A full 30x30 grid has no room for EOS.
        let full = Grid::new(30, 30, vec![7; 900]);
        assert!(encode(&full).iter().all(|&t| t == 9));
    }

    #[test]
    fn crop_follows_the_official_rule() {
        let g = Grid::new(3, 4, (0..12).map(|v| v % 10).collect());
        assert_eq!(crop(&encode(&g)), g);
        // A prediction with a shorter second row: 1 row x 4 (area 4) loses to 3 rows x 2
        // (area 6) once rows 2 and 3 also have 2 leading colours.
        let mut t = vec![0u8; SEQ_LEN];
        t[..4].copy_from_slice(&[2, 3, 4, 5]);
        t[30..32].copy_from_slice(&[6, 7]);
        t[60..62].copy_from_slice(&[8, 9]);
        assert_eq!(crop(&t), Grid::new(3, 2, vec![0, 1, 4, 5, 6, 7]));
        assert_eq!(crop(&[1; SEQ_LEN]), Grid::new(0, 0, vec![]));
    }

    #[test]
    fn identifier_round_trip() {
        let a = ArcAug { tid: 7, perm: [0, 3, 1, 2, 9, 8, 7, 6, 5, 4] };
        let n = a.name("007bbfb7");
        assert_eq!(n, "007bbfb7|||t7|||0312987654");
        assert_eq!(parse_identifier(&n).unwrap(), ("007bbfb7".into(), Some(a)));
        assert_eq!(parse_identifier("<blank>").unwrap(), ("<blank>".into(), None));
        assert!(parse_identifier("x|||t9|||0123456789").is_err());
        assert!(parse_identifier("x|||t1|||0123456788").is_err());
        let g = Grid::new(2, 3, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(a.invert(&a.apply(&g)), g);
    }
}

//! Terminal rendering of encoded examples (for `trm data show`).

use crate::maze;
use crate::metadata::DatasetMetadata;
use crate::sudoku::{self, SudokuShape};

/// What a split holds, inferred from its metadata (dataset.json has no kind field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Sudoku(SudokuShape),
    Maze { side: usize },
    Arc,
    Unknown,
}

/// 4x4 Sudoku and Maze both have 6 tokens; a 16-token split is taken to be Sudoku (use
/// [`detect_kind_in`] to read the recipe our builders record).
pub fn detect_kind(meta: &DatasetMetadata) -> DataKind {
    let side = (meta.seq_len as f64).sqrt() as usize;
    let square = side * side == meta.seq_len;
    match (meta.vocab_size, meta.seq_len) {
        (12, 900) => DataKind::Arc,
        (6, 16) => DataKind::Sudoku(SudokuShape { box_rows: 2, box_cols: 2 }),
        (6, _) if square => DataKind::Maze { side },
        (v, _) if square && v == side + 2 => SudokuShape::for_size(side).map_or(DataKind::Unknown, DataKind::Sudoku),
        _ => DataKind::Unknown,
    }
}

/// Like [`detect_kind`], but trusts `recipe.json` beside the split directory when our
/// builders wrote one.
pub fn detect_kind_in(split_dir: &std::path::Path, meta: &DatasetMetadata) -> DataKind {
    let guess = detect_kind(meta);
    let recipe = split_dir
        .parent()
        .and_then(|d| std::fs::read(d.join("recipe.json")).ok())
        .and_then(|b| serde_json::from_slice::<crate::DatasetRecipe>(&b).ok());
    let side = (meta.seq_len as f64).sqrt() as usize;
    match recipe {
        Some(crate::DatasetRecipe::Maze(_)) => DataKind::Maze { side },
        Some(crate::DatasetRecipe::Sudoku(_) | crate::DatasetRecipe::SudokuHard(_)) => {
            SudokuShape::for_size(side).map_or(guess, DataKind::Sudoku)
        }
        Some(crate::DatasetRecipe::Arc(_)) => DataKind::Arc,
        None => guess,
    }
}

/// The standard ARC palette (0 black .. 9 maroon) as RGB.
const ARC_RGB: [(u8, u8, u8); 10] = [
    (0, 0, 0),
    (0, 116, 217),
    (255, 65, 54),
    (46, 204, 64),
    (255, 220, 0),
    (170, 170, 170),
    (240, 18, 190),
    (255, 133, 27),
    (127, 219, 255),
    (135, 12, 37),
];

/// Render ARC tokens: the bounding box of non-PAD tokens (examples in the train split are
/// translated), colours as ANSI backgrounds (or digits), EOS as `E`, PAD as `.`.
pub fn render_arc(tokens: &[u8], color: bool) -> String {
    let at = |r: usize, c: usize| tokens.get(r * 30 + c).copied().unwrap_or(0);
    let cells: Vec<(usize, usize)> =
        (0..30).flat_map(|r| (0..30).map(move |c| (r, c))).filter(|&(r, c)| at(r, c) != 0).collect();
    let Some(r0) = cells.iter().map(|x| x.0).min() else { return "(empty)\n".into() };
    let r1 = cells.iter().map(|x| x.0).max().unwrap_or(r0);
    let c0 = cells.iter().map(|x| x.1).min().unwrap_or(0);
    let c1 = cells.iter().map(|x| x.1).max().unwrap_or(c0);
    let mut s = format!("(rows {r0}..={r1}, columns {c0}..={c1})\n");
    for r in r0..=r1 {
        for c in c0..=c1 {
            let t = at(r, c);
            match t {
                2..=11 if color => {
                    let (red, green, blue) = ARC_RGB[(t - 2) as usize];
                    s.push_str(&format!("\x1b[48;2;{red};{green};{blue}m  \x1b[0m"));
                }
                2..=11 => s.push_str(&format!("{} ", t - 2)),
                1 => s.push_str("E "),
                0 => s.push_str(". "),
                _ => s.push_str("? "),
            }
        }
        s.push('\n');
    }
    s
}

/// Render one example (inputs and labels as raw tokens) for a terminal.
pub fn render_example(kind: DataKind, inputs: &[u8], labels: &[u8], color: bool) -> String {
    let body = |tokens: &[u8]| match kind {
        DataKind::Sudoku(shape) => {
            // Tokens: 1 blank, d + 1 digit; PAD (0) would show as blank too.
            let cells: Vec<u8> = tokens.iter().map(|&t| t.saturating_sub(1)).collect();
            sudoku::render(shape, &cells)
        }
        DataKind::Maze { side } => maze::render(tokens, side),
        DataKind::Arc => render_arc(tokens, color),
        DataKind::Unknown => format!("{tokens:?}\n"),
    };
    format!("input:\n{}\nlabel:\n{}", body(inputs), body(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(vocab: usize, seq: usize) -> DatasetMetadata {
        DatasetMetadata {
            pad_id: 0,
            ignore_label_id: Some(0),
            blank_identifier_id: 0,
            vocab_size: vocab,
            seq_len: seq,
            num_puzzle_identifiers: 1,
            total_groups: 1,
            mean_puzzle_examples: 1.0,
            total_puzzles: Some(1),
            sets: vec!["all".into()],
        }
    }

    #[test]
    fn kinds_and_rendering() {
        assert_eq!(detect_kind(&meta(11, 81)), DataKind::Sudoku(SudokuShape::for_size(9).unwrap()));
        assert_eq!(detect_kind(&meta(6, 900)), DataKind::Maze { side: 30 });
        assert_eq!(detect_kind(&meta(6, 16)), DataKind::Sudoku(SudokuShape::for_size(4).unwrap()));
        assert_eq!(detect_kind(&meta(12, 900)), DataKind::Arc);
        assert_eq!(detect_kind(&meta(7, 10)), DataKind::Unknown);
        let s = render_example(DataKind::Maze { side: 2 }, &[3, 1, 2, 4], &[3, 1, 5, 4], false);
        assert_eq!(s, "input:\nS#\n G\n\nlabel:\nS#\noG\n");
        let mut t = vec![0u8; 900];
        t[0] = 2;
        t[1] = 1;
        t[30] = 1;
        assert_eq!(render_arc(&t, false), "(rows 0..=1, columns 0..=1)\n0 E \nE . \n");
    }
}

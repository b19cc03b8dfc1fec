//! Sudoku: shapes, the official CSV and the tdoku lists, validation, tokens, rendering.
//!
//! Tokens (official `build_sudoku_dataset.py`): PAD 0, blank 1, digit d -> d + 1, so vocab
//! = n + 2 and seq_len = n * n (11 and 81 for 9x9). 4x4 and 6x6 use the same scheme.

pub mod augment;
pub mod build;
pub mod canonical;
pub mod generator;
pub mod solver;

use std::path::Path;

use crate::DataError;

/// Box structure: an n x n grid with boxes of `box_rows` x `box_cols`, n = their product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SudokuShape {
    pub box_rows: usize,
    pub box_cols: usize,
}

impl SudokuShape {
    /// 4x4 (2x2 boxes), 6x6 (boxes of 2 rows x 3 columns) or 9x9 (3x3 boxes).
    pub fn for_size(n: usize) -> Result<Self, DataError> {
        match n {
            4 => Ok(SudokuShape { box_rows: 2, box_cols: 2 }),
            6 => Ok(SudokuShape { box_rows: 2, box_cols: 3 }),
            9 => Ok(SudokuShape { box_rows: 3, box_cols: 3 }),
            _ => Err(DataError::Config(format!("Sudoku size {n} is not supported (4, 6 or 9)"))),
        }
    }
    pub fn size(&self) -> usize {
        self.box_rows * self.box_cols
    }
    pub fn cells(&self) -> usize {
        self.size() * self.size()
    }
    pub fn vocab_size(&self) -> usize {
        self.size() + 2
    }
    pub fn seq_len(&self) -> usize {
        self.cells()
    }
    /// Box index of (r, c), boxes numbered row-major.
    pub fn box_of(&self, r: usize, c: usize) -> usize {
        let per_row = self.size() / self.box_cols;
        (r / self.box_rows) * per_row + c / self.box_cols
    }
}

/// One puzzle with its solution; cells are 0 (blank) or 1..=n, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudokuPuzzle {
    pub source: String,
    pub question: Vec<u8>,
    pub answer: Vec<u8>,
    /// Difficulty as given by the file (Sudoku-Extreme: tdoku backtracks; our lists and
    /// generator: solver guesses).
    pub rating: u64,
}

/// Encode cells (0 blank, 1..=n) as tokens (value + 1).
pub fn to_tokens(cells: &[u8]) -> Vec<u8> {
    cells.iter().map(|&v| v + 1).collect()
}

/// Parse an n*n-character grid: '.' or '0' blank, '1'..=n given.
pub fn parse_grid(text: &str, n: usize) -> Result<Vec<u8>, String> {
    // Characters, not bytes: a non-ASCII character is named as it was typed.
    let count = text.chars().count();
    if count != n * n {
        return Err(format!("expected {} characters, found {count}", n * n));
    }
    text.chars()
        .enumerate()
        .map(|(i, ch)| match ch {
            '.' | '0' => Ok(0),
            '1'..='9' if ch.to_digit(10).is_some_and(|d| d as usize <= n) => Ok(ch as u8 - b'0'),
            _ => Err(format!(
                "invalid character {ch:?} at cell {i} (row {}, column {}); expected '.' or '0' for a blank, or 1-{n}",
                i / n + 1,
                i % n + 1
            )),
        })
        .collect()
}

/// Checks that the givens of a puzzle (0 = blank) repeat no digit in a row, column or box:
/// such a puzzle has no solution.
pub fn check_givens(shape: SudokuShape, cells: &[u8]) -> Result<(), String> {
    let n = shape.size();
    if cells.len() != n * n {
        return Err(format!("expected {} cells, found {}", n * n, cells.len()));
    }
    let mut seen = vec![0u16; 3 * n];
    for r in 0..n {
        for c in 0..n {
            let d = cells[r * n + c];
            if d == 0 {
                continue;
            }
            if d as usize > n {
                return Err(format!("digit {d} at row {}, column {} is outside 1-{n}", r + 1, c + 1));
            }
            let bit = 1u16 << (d - 1);
            let b = shape.box_of(r, c);
            for (u, what, k) in [(r, "row", r), (n + c, "column", c), (2 * n + b, "box", b)] {
                if seen[u] & bit != 0 {
                    return Err(format!("the givens repeat digit {d} in {what} {}: the puzzle has no solution", k + 1));
                }
                seen[u] |= bit;
            }
        }
    }
    Ok(())
}

/// [`check_givens`], then whether any grid completes the givens at all (givens that break no
/// rule can still admit no solution). `Ok(true)`: exactly one solution; `Ok(false)`: several.
/// The solver proves either in milliseconds for every supported size (n <= 9).
pub fn check_puzzle(shape: SudokuShape, cells: &[u8]) -> Result<bool, String> {
    check_givens(shape, cells)?;
    match solver::Solver::new(shape).solve(cells, 2, &[]).solutions {
        0 => Err("the givens break no rule, but no grid completes them: the puzzle has no solution".into()),
        n => Ok(n == 1),
    }
}

/// Check that `answer` is a complete valid grid that agrees with the givens of `question`.
pub fn check_solution(shape: SudokuShape, question: &[u8], answer: &[u8]) -> Result<(), String> {
    let n = shape.size();
    if let Some(i) = answer.iter().position(|&d| d == 0) {
        return Err(format!("solution has a blank at row {}, column {}", i / n + 1, i % n + 1));
    }
    for (i, (&q, &a)) in question.iter().zip(answer).enumerate() {
        if q != 0 && q != a {
            return Err(format!(
                "solution does not solve the puzzle: row {}, column {} is given {q} but the solution has {a}",
                i / n + 1,
                i % n + 1
            ));
        }
    }
    let mut seen = vec![0u16; 3 * n];
    for r in 0..n {
        for c in 0..n {
            let bit = 1u16 << (answer[r * n + c] - 1);
            for (u, what, k) in
                [(r, "row", r), (n + c, "column", c), (2 * n + shape.box_of(r, c), "box", shape.box_of(r, c))]
            {
                if seen[u] & bit != 0 {
                    return Err(format!("solution repeats digit {} in {what} {}", answer[r * n + c], k + 1));
                }
                seen[u] |= bit;
            }
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| DataError::row(path, 0, format!("not UTF-8 text: {e}")))
}

/// Read the official CSV (`source,question,answer,rating`; the tdoku CSVs name the last
/// column `guesses`). The first row is a header and is skipped, as the official reader does.
/// Every solution is checked against its puzzle.
pub fn read_csv(path: &Path, shape: SudokuShape) -> Result<Vec<SudokuPuzzle>, DataError> {
    parse_csv(path, &read_text(path)?, shape)
}

/// [`read_csv`] on text already in memory (`path` is used in messages).
pub fn parse_csv(path: &Path, text: &str, shape: SudokuShape) -> Result<Vec<SudokuPuzzle>, DataError> {
    let n = shape.size();
    let records = crate::csv::parse(text).map_err(|(row, m)| DataError::row(path, row, m))?;
    let mut out = Vec::with_capacity(records.len());
    for rec in records.into_iter().skip(1) {
        let err = |m: String| DataError::row(path, rec.row, m);
        let [source, q, a, rating] = &rec.fields[..] else {
            return Err(err(format!("expected 4 fields (source,question,answer,rating), found {}", rec.fields.len())));
        };
        let question = parse_grid(q, n).map_err(|m| err(format!("question: {m}")))?;
        let answer = parse_grid(a, n).map_err(|m| err(format!("answer: {m}")))?;
        check_solution(shape, &question, &answer).map_err(err)?;
        let rating = rating
            .trim()
            .parse::<u64>()
            .map_err(|_| err(format!("rating {rating:?} is not a non-negative integer")))?;
        out.push(SudokuPuzzle { source: source.clone(), question, answer, rating });
    }
    Ok(out)
}

/// Read a tdoku raw list (`#` comment lines, blank lines, one 81-character puzzle a line).
/// Returns `(line number, puzzle)`; solutions must be computed (see [`solver::Solver`]).
pub fn read_raw_list(path: &Path, n: usize) -> Result<Vec<(usize, Vec<u8>)>, DataError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let g = parse_grid(line, n).map_err(|m| DataError::row(path, k + 1, m))?;
        out.push((k + 1, g));
    }
    Ok(out)
}

/// Render a grid (0 blank) with box separators.
pub fn render(shape: SudokuShape, cells: &[u8]) -> String {
    let n = shape.size();
    let mut s = String::new();
    for r in 0..n {
        if r > 0 && r % shape.box_rows == 0 {
            let seg = "-".repeat(shape.box_cols * 2 - 1);
            s.push_str(&vec![seg; n / shape.box_cols].join("-+-"));
            s.push('\n');
        }
        for c in 0..n {
            if c > 0 {
                s.push_str(if c % shape.box_cols == 0 { " | " } else { " " });
            }
            let v = cells.get(r * n + c).copied().unwrap_or(0);
            s.push(if v == 0 { '.' } else { char::from_digit(v as u32, 10).unwrap_or('?') });
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "4...3.......6..8..........1....5..9..8....6...7.2........1.27..5.3....4.9........";
    const A: &str = "468931527751624839392578461134756298289413675675289314846192753513867942927345186";

    #[test]
    fn non_ascii_characters_are_counted_and_named_as_typed() {
        // 16 characters, one of them 3 bytes long: the length was checked in bytes, so the
        // message read "expected 16 characters, found 16".
        let e = parse_grid("\u{ff11}...............", 4).unwrap_err();
        assert!(e.contains("invalid character '\u{ff11}' at cell 0"), "{e}");
        let e = parse_grid("1..............\u{e9}", 4).unwrap_err();
        assert!(e.contains("'\u{e9}' at cell 15"), "{e}");
        let e = parse_grid("\u{e9}\u{e9}", 4).unwrap_err();
        assert_eq!(e, "expected 16 characters, found 2");
    }

    #[test]
    fn contradictory_givens_are_found() {
        let shape = SudokuShape::for_size(4).unwrap();
        assert!(check_givens(shape, &parse_grid("1.3..2.4........", 4).unwrap()).is_ok());
        for (grid, unit) in
            [("11..............", "row 1"), ("1...1...........", "column 1"), ("1....1..........", "box 1")]
        {
            let e = check_givens(shape, &parse_grid(grid, 4).unwrap()).unwrap_err();
            assert!(e.contains(&format!("repeat digit 1 in {unit}")), "{grid}: {e}");
        }
        assert!(check_givens(shape, &[0; 15]).is_err());
        assert!(check_givens(shape, &[5; 16]).unwrap_err().contains("outside 1-4"));
    }

    #[test]
    fn puzzles_without_a_solution_are_found() {
        let shape = SudokuShape::for_size(4).unwrap();
        // Row 1 needs a 4 in its last cell, which column 4 already has further down.
        let none = parse_grid("123............4", 4).unwrap();
        check_givens(shape, &none).unwrap();
        assert!(check_puzzle(shape, &none).unwrap_err().contains("no solution"));
        // The same clash in a unit is still reported by check_givens' message.
        assert!(check_puzzle(shape, &parse_grid("11..............", 4).unwrap()).unwrap_err().contains("row 1"));
        assert_eq!(check_puzzle(shape, &parse_grid("1.3..2.4........", 4).unwrap()), Ok(false));
        assert_eq!(check_puzzle(shape, &parse_grid("12343412214343..", 4).unwrap()), Ok(true));
    }

    #[test]
    fn csv_reads_and_validates() {
        let p = Path::new("t.csv");
        let ok = format!("source,question,answer,rating\nm,{Q},{A},7\n");
        let r = parse_csv(p, &ok, SudokuShape::for_size(9).unwrap()).unwrap();
        assert_eq!(r[0].question[0], 4);
        assert_eq!(to_tokens(&r[0].question)[..2], [5, 1]);
        // Swap two digits of the answer: it no longer agrees with the givens.
        let bad = A.replacen('4', "x", 1).replacen('6', "4", 1).replacen('x', "6", 1);
        let e =
            parse_csv(p, &format!("h\nm,{Q},{bad},7\n"), SudokuShape::for_size(9).unwrap()).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("does not solve"), "{e}");
        let e = parse_csv(p, &format!("h\nm,{Q},{A}\n"), SudokuShape::for_size(9).unwrap()).unwrap_err().to_string();
        assert!(e.contains("expected 4 fields"), "{e}");
        let e = parse_csv(p, &format!("h\nm,{},{A},1\n", Q.replacen('4', "x", 1)), SudokuShape::for_size(9).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid character 'x'"), "{e}");
    }

    #[test]
    fn six_by_six_boxes_are_two_rows_by_three_columns() {
        let s = SudokuShape::for_size(6).unwrap();
        assert_eq!((s.box_of(0, 2), s.box_of(0, 3), s.box_of(1, 0), s.box_of(2, 0), s.box_of(5, 5)), (0, 1, 0, 2, 5));
        assert_eq!((s.vocab_size(), s.seq_len()), (8, 36));
    }
}

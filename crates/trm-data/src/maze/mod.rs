//! Maze: the official CSV, the Maze-Hard style generator, BFS labels, rendering.
//!
//! Tokens (official `build_maze_dataset.py`, CHARSET "# SGo"): PAD 0, '#' wall 1,
//! ' ' free 2, 'S' start 3, 'G' goal 4, 'o' path 5; vocab 6, seq_len = side * side.

pub mod build;
pub mod generator;

use std::collections::VecDeque;
use std::path::Path;

use crate::DataError;

pub const CHARSET: &[u8; 5] = b"# SGo";

/// One maze; `question` and `answer` hold the characters of [`CHARSET`], row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MazePuzzle {
    pub side: usize,
    pub question: Vec<u8>,
    pub answer: Vec<u8>,
    /// Shortest-path length in moves (the generator's `rating`).
    pub rating: u64,
}

/// Token of a maze character (0 for anything outside the charset).
pub fn char_token(c: u8) -> u8 {
    CHARSET.iter().position(|&x| x == c).map_or(0, |p| p as u8 + 1)
}

/// Character of a token (`?` for PAD or out of range).
pub fn token_char(t: u8) -> u8 {
    if (1..=5).contains(&t) {
        CHARSET[t as usize - 1]
    } else {
        b'?'
    }
}

/// A shortest path from S to G over non-wall cells, as cell indices from S to G, found
/// by BFS that explores neighbours in the order down, left, right, up and keeps the first
/// parent that reached each cell (the tie-break reported for the official labels).
pub fn shortest_path(cells: &[u8], side: usize) -> Option<Vec<usize>> {
    let start = cells.iter().position(|&c| c == b'S')?;
    let goal = cells.iter().position(|&c| c == b'G')?;
    let mut parent = vec![usize::MAX; cells.len()];
    parent[start] = start;
    let mut queue = VecDeque::from([start]);
    while let Some(i) = queue.pop_front() {
        if i == goal {
            break;
        }
        for j in neighbours(i, side).into_iter().flatten() {
            if parent[j] == usize::MAX && cells[j] != b'#' {
                parent[j] = i;
                queue.push_back(j);
            }
        }
    }
    if parent[goal] == usize::MAX {
        return None;
    }
    let mut path = vec![goal];
    let mut i = goal;
    while i != start {
        i = parent[i];
        path.push(i);
    }
    path.reverse();
    Some(path)
}

/// The answer grid for a question: the path cells between S and G become 'o'.
pub fn solve(question: &[u8], side: usize) -> Option<(Vec<u8>, usize)> {
    let path = shortest_path(question, side)?;
    let mut a = question.to_vec();
    for &i in &path[1..path.len() - 1] {
        a[i] = b'o';
    }
    Some((a, path.len() - 1))
}

/// Check a maze question: only `#`, space, `S` and `G`, exactly one `S` and one `G`.
pub fn check_question(question: &[u8]) -> Result<(), String> {
    if let Some(&c) = question.iter().find(|c| !CHARSET.contains(c)) {
        return Err(format!("character {:?} is not one of \"# SGo\"", c as char));
    }
    for (name, ch) in [("start 'S'", b'S'), ("goal 'G'", b'G')] {
        let k = question.iter().filter(|&&c| c == ch).count();
        if k != 1 {
            return Err(format!("question has {k} {name} cells, expected 1"));
        }
    }
    if question.contains(&b'o') {
        return Err("question already contains path cells 'o'".into());
    }
    Ok(())
}

/// Check one CSV row: charset, one S and one G, answer = question plus an 'o' path that
/// connects S to G through free cells.
pub fn check_row(question: &[u8], answer: &[u8], side: usize) -> Result<(), String> {
    if let Some(i) = question.iter().chain(answer).position(|c| !CHARSET.contains(c)) {
        let c = question.iter().chain(answer).nth(i).copied().unwrap_or(0);
        return Err(format!("character {:?} is not one of \"# SGo\"", c as char));
    }
    check_question(question)?;
    for (i, (&q, &a)) in question.iter().zip(answer).enumerate() {
        if q != a && !(q == b' ' && a == b'o') {
            return Err(format!(
                "answer differs from the question at row {}, column {} ({:?} vs {:?})",
                i / side + 1,
                i % side + 1,
                q as char,
                a as char
            ));
        }
    }
    // The marked path must connect S to G.
    let marked: Vec<u8> = answer.iter().map(|&c| if c == b' ' { b'#' } else { c }).collect();
    if shortest_path(&marked, side).is_none() {
        return Err("the answer's path does not connect S to G: solution does not solve the maze".into());
    }
    Ok(())
}

/// Read the official maze CSV (`source,question,answer,rating`; header skipped). The side
/// is the square root of the first question's length, as in the official builder.
pub fn read_csv(path: &Path) -> Result<Vec<MazePuzzle>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::row(path, 0, format!("not UTF-8 text: {e}")))?;
    parse_csv(path, &text)
}

/// [`read_csv`] on text in memory.
pub fn parse_csv(path: &Path, text: &str) -> Result<Vec<MazePuzzle>, DataError> {
    let records = crate::csv::parse(text).map_err(|(row, m)| DataError::row(path, row, m))?;
    let mut side = None;
    let mut out = Vec::new();
    for rec in records.into_iter().skip(1) {
        let err = |m: String| DataError::row(path, rec.row, m);
        let [_, q, a, rating] = &rec.fields[..] else {
            return Err(err(format!("expected 4 fields (source,question,answer,rating), found {}", rec.fields.len())));
        };
        let s = *side.get_or_insert_with(|| (q.len() as f64).sqrt() as usize);
        if s == 0 || q.len() != s * s || a.len() != s * s {
            return Err(err(format!(
                "question/answer have {} and {} characters; expected {} ({s}x{s}, from the first row)",
                q.len(),
                a.len(),
                s * s
            )));
        }
        check_row(q.as_bytes(), a.as_bytes(), s).map_err(err)?;
        let rating = rating
            .trim()
            .parse::<u64>()
            .map_err(|_| err(format!("rating {rating:?} is not a non-negative integer")))?;
        out.push(MazePuzzle { side: s, question: q.as_bytes().to_vec(), answer: a.as_bytes().to_vec(), rating });
    }
    Ok(out)
}

/// Render a maze grid of tokens as its characters.
pub fn render(tokens: &[u8], side: usize) -> String {
    let mut s = String::new();
    for row in tokens.chunks(side.max(1)) {
        s.extend(row.iter().map(|&t| token_char(t) as char));
        s.push('\n');
    }
    s
}

/// The 4-neighbours of cell `i` on a `side` x `side` grid, in the BFS order down, left,
/// right, up (the order decides which of several shortest paths is the label).
pub(crate) fn neighbours(i: usize, side: usize) -> [Option<usize>; 4] {
    let (r, c) = (i / side, i % side);
    [(r + 1 < side).then(|| i + side), (c > 0).then(|| i - 1), (c + 1 < side).then(|| i + 1), (r > 0).then(|| i - side)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_checked_alone() {
        assert!(check_question(b"S  #G").is_ok());
        // Unknown characters used to become PAD tokens in `trm solve`.
        assert!(check_question(b"S  XG").unwrap_err().contains("'X' is not one of"));
        assert!(check_question("S  \u{e9}G".as_bytes()).is_err());
        assert!(check_question(b"S   S G").unwrap_err().contains("2 start 'S' cells"));
        assert!(check_question(b"S    ").unwrap_err().contains("0 goal 'G' cells"));
        assert!(check_question(b"So  G").unwrap_err().contains("path cells"));
    }

    #[test]
    fn bfs_prefers_down_then_left_right_up() {
        // S at top-left, G at bottom-right of an open 3x3: two moves down come first.
        let mut q = b"S        ".to_vec();
        q[8] = b'G';
        let (a, moves) = solve(&q, 3).unwrap();
        assert_eq!(moves, 4);
        assert_eq!(&a, b"S  o  ooG");
    }

    #[test]
    fn csv_validation() {
        let p = Path::new("m.csv");
        let good = "source,question,answer,rating\nx,S # G,So#oG,2\n";
        // 5 characters is not a square: error names the row.
        let e = parse_csv(p, good).unwrap_err().to_string();
        assert!(e.contains("row 2"), "{e}");
        let ok = "h\nx,S# G,S#oG,2\n";
        let m = parse_csv(p, ok).unwrap();
        assert_eq!(m[0].side, 2);
        let broken = "h\nx,S# G,S# G,2\n";
        assert!(parse_csv(p, broken).unwrap_err().to_string().contains("does not connect"));
        let alien = "h\nx,S#xG,S#xG,2\n";
        assert!(parse_csv(p, alien).unwrap_err().to_string().contains("'x'"));
        assert_eq!(
            (char_token(b'#'), char_token(b' '), char_token(b'S'), char_token(b'G'), char_token(b'o')),
            (1, 2, 3, 4, 5)
        );
    }
}
